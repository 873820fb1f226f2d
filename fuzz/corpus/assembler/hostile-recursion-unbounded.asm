call local f
exit
f:
call local f
exit
