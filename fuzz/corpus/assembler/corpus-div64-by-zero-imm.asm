mov %r0, 7
div %r0, 0
exit
