lddw %r1, 0x100000021
mov %r0, 1
lsh32 %r0, %r1
mov %r2, 1
lsh %r2, %r1
add %r0, %r2
exit
