lddw %r1, 0x0102030405060708
le64 %r1
lddw %r2, 0x0102030405060708
jne %r1, %r2, fail
lddw %r1, 0x0102030405060708
be64 %r1
lddw %r2, 0x0807060504030201
jne %r1, %r2, fail
lddw %r0, 0x0102030405060708
bswap64 %r0
exit
fail:
mov %r0, 0xbad
exit
