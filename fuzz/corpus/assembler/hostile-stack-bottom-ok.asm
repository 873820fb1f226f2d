stb [%r10-512], 9
ldxb %r0, [%r10-512]
exit
