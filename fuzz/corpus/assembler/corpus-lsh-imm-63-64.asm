lddw %r0, 0x3
lsh %r0, 63
lddw %r1, 0x3
lsh %r1, 64
add %r0, %r1
exit
