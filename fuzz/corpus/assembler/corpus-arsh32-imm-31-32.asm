lddw %r0, 0x80000000
arsh32 %r0, 31
lddw %r1, 0x80000000
arsh32 %r1, 32
add %r0, %r1
exit
