mov %r6, 6
mov %r7, 7
mov %r8, 8
mov %r9, 9
call local f
mov %r0, %r6
add %r0, %r7
add %r0, %r8
add %r0, %r9
exit
f:
mov %r6, 0x100
mov %r7, 0x100
mov %r8, 0x100
mov %r9, 0x100
exit
