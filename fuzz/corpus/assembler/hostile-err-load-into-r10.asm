ldxdw %r10, [%r1+0]
exit
