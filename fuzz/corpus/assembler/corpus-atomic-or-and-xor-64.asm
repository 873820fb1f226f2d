stdw [%r10-8], 0xf0f0
mov %r1, 0x0f0f
lock or [%r10-8], %r1
mov %r2, 0xff00ff
lock fetch and [%r10-8], %r2
jne %r2, 0xffff, fail
mov %r3, 0x0fff
lock fetch xor [%r10-8], %r3
jne %r3, 0xff, fail
jne %r1, 0x0f0f, fail
ldxdw %r0, [%r10-8]
exit
fail:
mov %r0, 0xbad
exit
