lddw %r1, 0x1122334455667788
stxdw [%r10-8], %r1
mov32 %r0, 0xaabbccdd
lock xchg [%r10-8], %r0
ldxdw %r2, [%r10-8]
mov32 %r3, 0xaabbccdd
jne %r2, %r3, fail
exit
fail:
mov %r0, 0xbad
exit
