stdw [%r10-8], 42
mov %r1, %r10
sub %r1, 8
call local f
exit
f:
ldxdw %r0, [%r1+0]
exit
