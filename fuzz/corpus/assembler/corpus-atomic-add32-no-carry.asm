lddw %r1, 0x00000001ffffffff
stxdw [%r10-8], %r1
mov %r2, 1
lock add32 [%r10-8], %r2
ldxdw %r0, [%r10-8]
exit
