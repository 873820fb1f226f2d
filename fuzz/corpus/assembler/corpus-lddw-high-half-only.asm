lddw %r0, 0xffffffff00000000
exit
