mov %r1, 1
lock add [%r10-12], %r1
exit
