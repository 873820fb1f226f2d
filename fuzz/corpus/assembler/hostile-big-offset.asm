ldxh %r0, [%r1+0x7fff]
exit
