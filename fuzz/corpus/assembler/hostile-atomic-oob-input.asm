mov %r2, 1
lock fetch add [%r1+8], %r2
exit
