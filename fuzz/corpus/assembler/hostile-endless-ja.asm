mov %r0, 0
loop:
jeq %r0, 0, loop
exit
