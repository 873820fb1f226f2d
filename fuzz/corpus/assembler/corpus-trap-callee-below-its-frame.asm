call local f
exit
f:
ldxb %r0, [%r10-513]
exit
