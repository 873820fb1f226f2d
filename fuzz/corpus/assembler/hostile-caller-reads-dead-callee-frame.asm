call local f
mov %r2, %r0
ldxdw %r0, [%r2+0]
exit
f:
mov %r0, %r10
sub %r0, 8
exit
