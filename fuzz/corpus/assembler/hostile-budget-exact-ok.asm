mov %r0, 3
add %r0, 4
exit
