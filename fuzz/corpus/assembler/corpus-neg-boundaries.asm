mov %r0, 0
neg %r0
mov %r1, 1
neg %r1
add %r0, %r1
lddw %r2, 0x8000000000000000
neg %r2
add %r0, %r2
exit
