mov %r0, 0
mov %r4, 1
lsh %r4, 32
jgt %r4, 5, +2
mov %r0, 1
exit
mov %r0, 2
exit
