lddw %r1, 0xffffffffffffffff
ldxb %r0, [%r1+8]
exit
