call local f
exit
f:
call local g
exit
g:
mov %r0, 1
exit
