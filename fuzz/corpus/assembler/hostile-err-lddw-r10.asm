lddw %r10, 0x1
exit
