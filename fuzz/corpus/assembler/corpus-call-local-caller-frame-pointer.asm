stdw [%r10-16], 0x5a
mov %r1, %r10
add %r1, -16
call local f
ldxdw %r1, [%r10-16]
add %r0, %r1
exit
f:
ldxdw %r0, [%r1+0]
stdw [%r1+0], 0x77
exit
