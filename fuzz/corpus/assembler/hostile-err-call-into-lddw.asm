call local +1
lddw %r0, 0x1
exit
