ja +1
lddw %r0, 1
exit
