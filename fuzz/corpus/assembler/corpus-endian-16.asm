lddw %r1, 0x0102030405060708
le16 %r1
lddw %r2, 0x0708
jne %r1, %r2, fail
lddw %r1, 0x0102030405060708
be16 %r1
lddw %r2, 0x0807
jne %r1, %r2, fail
lddw %r0, 0x0102030405060708
bswap16 %r0
exit
fail:
mov %r0, 0xbad
exit
