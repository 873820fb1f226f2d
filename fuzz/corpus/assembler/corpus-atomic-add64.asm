lddw %r1, 0x00000001ffffffff
stxdw [%r10-8], %r1
mov %r2, 1
lock add [%r10-8], %r2
jne %r2, 1, fail
ldxdw %r0, [%r10-8]
exit
fail:
mov %r0, 0xbad
exit
