mov %r2, 2
lock fetch add [%r1+8], %r2
ldxdw %r0, [%r1+8]
add %r0, %r2
exit
