ja +2
call local f
exit
f:
mov %r0, 1
exit
