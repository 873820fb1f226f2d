lddw %r0, 0xffffffff00000007
div32 %r0, 0
exit
