mov %r2, 99
call %r2
exit
