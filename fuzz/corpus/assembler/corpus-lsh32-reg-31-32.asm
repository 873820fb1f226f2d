mov %r2, 31
mov %r3, 32
lddw %r0, 0xffffffff00000001
lsh32 %r0, %r2
lddw %r1, 0xffffffff00000001
lsh32 %r1, %r3
add %r0, %r1
exit
