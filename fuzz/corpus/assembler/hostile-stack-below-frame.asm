ldxb %r0, [%r10-513]
exit
