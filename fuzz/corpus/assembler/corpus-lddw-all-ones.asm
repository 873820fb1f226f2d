lddw %r0, 0xffffffffffffffff
exit
