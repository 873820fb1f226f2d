lddw %r0, 0xfffffffb00000000
lddw %r1, 0x100000000
sdiv %r0, %r1
exit
