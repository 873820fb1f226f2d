lddw %r0, 0xffffffff80000000
rsh32 %r0, 31
lddw %r1, 0xffffffff80000000
rsh32 %r1, 32
add %r0, %r1
exit
