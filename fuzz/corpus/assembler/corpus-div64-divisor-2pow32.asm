lddw %r0, 0x500000000
lddw %r1, 0x100000000
div %r0, %r1
exit
