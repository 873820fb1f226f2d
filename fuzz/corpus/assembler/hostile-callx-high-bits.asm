lddw %r2, 0x100000005
call %r2
exit
