mov %r0, 9
mov %r2, 5
call %r2
exit
