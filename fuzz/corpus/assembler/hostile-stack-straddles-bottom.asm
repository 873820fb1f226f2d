ldxdw %r0, [%r10-516]
exit
