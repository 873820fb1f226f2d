lddw %r4, 0x112233440000f0f0
stxdw [%r10-8], %r4
lddw %r1, 0xffffffff00000f0f
lock or32 [%r10-8], %r1
lddw %r2, 0xffffffff00ff00ff
lock fetch and32 [%r10-8], %r2
jne %r2, 0xffff, fail
lddw %r3, 0xffffffff00000fff
lock fetch xor32 [%r10-8], %r3
jne %r3, 0xff, fail
ldxdw %r0, [%r10-8]
exit
fail:
mov %r0, 0xbad
exit
