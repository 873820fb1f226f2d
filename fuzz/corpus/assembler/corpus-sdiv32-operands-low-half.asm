lddw %r0, 0x7ffffffffffffff6
lddw %r1, 0x1fffffffe
sdiv32 %r0, %r1
exit
