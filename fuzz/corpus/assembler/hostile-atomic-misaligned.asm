mov %r2, 1
lock add [%r10-12], %r2
exit
