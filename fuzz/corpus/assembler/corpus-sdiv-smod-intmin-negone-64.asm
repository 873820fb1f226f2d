lddw %r0, 0x8000000000000000
sdiv %r0, -1
lddw %r1, 0x8000000000000000
mov %r2, -1
smod %r1, %r2
add %r0, %r1
exit
