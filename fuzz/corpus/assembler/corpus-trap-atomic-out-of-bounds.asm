mov %r2, 1
lock add [%r1+4], %r2
exit
