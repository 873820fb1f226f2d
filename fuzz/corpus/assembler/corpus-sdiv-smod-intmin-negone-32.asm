mov32 %r0, 0x80000000
mov32 %r2, -1
sdiv32 %r0, %r2
mov32 %r1, 0x80000000
smod32 %r1, -1
add %r0, %r1
exit
