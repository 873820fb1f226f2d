lddw %r1, 0x1234567800000005
stxdw [%r10-8], %r1
lddw %r0, 0x100000006
mov %r1, 9
lock cmpxchg32 [%r10-8], %r1
ldxdw %r2, [%r10-8]
lsh %r0, 4
add %r0, %r2
exit
