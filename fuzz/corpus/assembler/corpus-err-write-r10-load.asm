ldxdw %r10, [%r10-8]
exit
