ldxsw %r0, [%r1+4]
ldxsw %r2, [%r1+0]
jne %r2, 0x7ffffffe, fail
exit
fail:
mov %r0, 0xbad
exit
