mov %r0, 7
call 5
add %r0, 3
exit
