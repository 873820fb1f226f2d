ldxw %r0, [%r1-32768]
exit
