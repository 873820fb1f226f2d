stdw [%r10-8], 0x1111
stdw [%r10-512], 0x3333
call local f
ldxdw %r1, [%r10-8]
add %r0, %r1
ldxdw %r1, [%r10-512]
add %r0, %r1
exit
f:
ldxdw %r0, [%r10-8]
ldxdw %r1, [%r10-512]
add %r0, %r1
stdw [%r10-8], 0x2222
stdw [%r10-512], 0x2222
exit
