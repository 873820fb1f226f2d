lddw %r2, 0xfffffffffffffffc
ldxdw %r0, [%r2+0]
exit
