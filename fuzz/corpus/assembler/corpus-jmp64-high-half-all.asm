mov %r0, 0
mov %r4, 1
lsh %r4, 32
lddw %r5, 0xffffffff00000000
jeq %r4, 0, fail
add %r0, 1
jne %r4, 0, l1
ja fail
l1:
add %r0, 1
jset %r4, %r4, l2
ja fail
l2:
add %r0, 1
jslt %r5, 0, l3
ja fail
l3:
add %r0, 1
jsge %r5, 0, fail
add %r0, 1
jlt %r5, 1, fail
add %r0, 1
jgt %r5, %r4, l4
ja fail
l4:
add %r0, 1
jsgt %r4, %r5, l5
ja fail
l5:
add %r0, 1
exit
fail:
mov %r0, -1
exit
