mov %r0, %r12
exit
