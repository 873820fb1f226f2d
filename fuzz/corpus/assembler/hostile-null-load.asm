mov %r1, 0
ldxdw %r0, [%r1+0]
exit
