mov %r2, 42
call %r2
exit
