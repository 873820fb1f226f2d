lddw %r0, 0x1234567812345678
mov32 %r0, -1
exit
