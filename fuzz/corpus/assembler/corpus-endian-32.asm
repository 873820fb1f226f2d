lddw %r1, 0x0102030405060708
le32 %r1
lddw %r2, 0x05060708
jne %r1, %r2, fail
lddw %r1, 0x0102030405060708
be32 %r1
lddw %r2, 0x08070605
jne %r1, %r2, fail
lddw %r0, 0x0102030405060708
bswap32 %r0
exit
fail:
mov %r0, 0xbad
exit
