mov %r2, -1
call %r2
exit
