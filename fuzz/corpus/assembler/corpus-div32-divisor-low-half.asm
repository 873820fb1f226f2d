mov %r0, 10
lddw %r1, 0x100000003
div32 %r0, %r1
exit
