mov %r0, 0
mov %r1, %r10
sub %r1, 512
loop:
ldxdw %r2, [%r1+0]
or %r0, %r2
add %r1, 8
jne %r1, %r10, loop
exit
