mov %r2, 1
lock cmpxchg32 [%r10+0], %r2
exit
