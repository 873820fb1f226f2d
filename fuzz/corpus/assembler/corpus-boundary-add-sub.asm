lddw %r0, 0x7fffffffffffffff
add %r0, 1
mov32 %r1, 0x7fffffff
add32 %r1, 1
xor %r0, %r1
mov %r2, 0
sub %r2, 1
xor %r0, %r2
mov32 %r3, 0x80000000
sub32 %r3, 1
xor %r0, %r3
exit
