mov %r0, -1
lddw %r0, 0
exit
