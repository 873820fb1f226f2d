lddw %r0, 0xfffffffafffffff9
lddw %r1, 0x100000000
smod %r0, %r1
exit
