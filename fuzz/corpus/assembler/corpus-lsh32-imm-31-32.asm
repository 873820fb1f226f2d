lddw %r0, 0xffffffff00000001
lsh32 %r0, 31
lddw %r1, 0xffffffff00000001
lsh32 %r1, 32
add %r0, %r1
exit
