lddw %r1, 0xfffffffffffffffc
ldxdw %r0, [%r1+0]
exit
