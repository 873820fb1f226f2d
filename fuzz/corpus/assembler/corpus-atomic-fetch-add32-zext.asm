stw [%r10-8], 5
lddw %r1, 0xffffffff00000001
lock fetch add32 [%r10-8], %r1
ldxw %r0, [%r10-8]
lsh %r1, 4
add %r0, %r1
exit
