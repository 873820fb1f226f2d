mov %r0, 0
ja32 fwd
back:
add %r0, 1
exit
fwd:
add %r0, 10
ja32 back
