mov %r1, 1
mov %r2, 2
mov %r3, 3
mov %r4, 4
mov %r5, 5
call local f
or %r1, %r2
or %r1, %r3
or %r1, %r4
or %r1, %r5
add %r0, %r1
exit
f:
mov %r0, %r1
add %r0, %r2
add %r0, %r3
add %r0, %r4
add %r0, %r5
exit
