lddw %r0, 5
exit
