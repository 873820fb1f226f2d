mov %r2, -1
ldxb %r0, [%r2+1]
exit
