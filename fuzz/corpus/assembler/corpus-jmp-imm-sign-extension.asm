mov %r0, 0
lddw %r1, 0x7fffffffffffffff
jgt %r1, -1, fail
add %r0, 1
jsgt %r1, -1, l1
ja fail
l1:
add %r0, 1
mov %r2, 0
jlt32 %r2, -1, l2
ja fail
l2:
add %r0, 1
exit
fail:
mov %r0, -1
exit
