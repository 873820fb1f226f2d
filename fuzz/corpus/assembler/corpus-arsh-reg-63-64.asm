mov %r2, 63
mov %r3, 64
lddw %r0, 0x8000000000000000
arsh %r0, %r2
lddw %r1, 0x8000000000000000
arsh %r1, %r3
add %r0, %r1
exit
