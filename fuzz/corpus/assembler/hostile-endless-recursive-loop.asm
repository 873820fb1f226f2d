call local f
exit
f:
ja -1
exit
