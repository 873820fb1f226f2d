ldxdw %r0, [%r10-4]
exit
