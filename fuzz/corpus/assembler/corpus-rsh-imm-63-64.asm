lddw %r0, 0x8000000000000000
rsh %r0, 63
lddw %r1, 0x8000000000000000
rsh %r1, 64
add %r0, %r1
exit
