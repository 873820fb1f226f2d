ldxsb %r0, [%r1+0]
ldxsb %r2, [%r1+3]
jne %r2, 0x7f, fail
exit
fail:
mov %r0, 0xbad
exit
