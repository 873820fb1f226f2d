mov %r2, 63
mov %r3, 64
lddw %r0, 0x3
lsh %r0, %r2
lddw %r1, 0x3
lsh %r1, %r3
add %r0, %r1
exit
