ldxsh %r0, [%r1+0]
ldxsh %r2, [%r1+4]
jne %r2, 0x80, fail
exit
fail:
mov %r0, 0xbad
exit
