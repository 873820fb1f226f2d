stb [%r10-512], 0x12
stb [%r10-1], 0x34
ldxb %r0, [%r10-512]
ldxb %r1, [%r10-1]
lsh %r0, 8
or %r0, %r1
exit
