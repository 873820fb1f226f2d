lock fetch add [%r1+0], %r10
exit
