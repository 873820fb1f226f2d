mov %r0, -1
mul %r0, -1
mov32 %r1, -1
mul32 %r1, %r1
add %r0, %r1
lddw %r2, 0x7fffffffffffffff
mul %r2, 2
add %r0, %r2
exit
