add %r1, %r2
ldxb %r0, [%r1+0]
exit
