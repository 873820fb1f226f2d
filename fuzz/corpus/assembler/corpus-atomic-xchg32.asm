lddw %r1, 0x1122334455667788
stxdw [%r10-8], %r1
lddw %r0, 0xffffffffaabbccdd
lock xchg32 [%r10-8], %r0
ldxdw %r2, [%r10-8]
lddw %r3, 0x11223344aabbccdd
jne %r2, %r3, fail
exit
fail:
mov %r0, 0xbad
exit
