mov %r3, %r10
sub %r3, 600
ldxw %r0, [%r3+0]
exit
