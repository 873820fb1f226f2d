stdw [%r10-8], 5
mov %r0, 5
mov %r1, 9
lock cmpxchg [%r10-8], %r1
ldxdw %r2, [%r10-8]
lsh %r0, 4
add %r0, %r2
exit
