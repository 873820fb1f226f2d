mov %r2, 31
mov %r3, 32
lddw %r0, 0x80000000
arsh32 %r0, %r2
lddw %r1, 0x80000000
arsh32 %r1, %r3
add %r0, %r1
exit
