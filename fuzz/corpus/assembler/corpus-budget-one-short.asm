mov %r0, 1
add %r0, 1
exit
