mov %r0, -1
div %r0, 2
mov32 %r1, -1
div32 %r1, 0x80000000
add %r0, %r1
exit
