lddw %r0, 0x123456789abcdef7
and %r0, -16
mov %r1, 0
or %r1, 0x80000000
xor %r0, %r1
lddw %r2, 0xffffffff00000000
xor %r2, -1
xor %r0, %r2
mov %r3, 0
add %r3, -2147483648
xor %r0, %r3
exit
