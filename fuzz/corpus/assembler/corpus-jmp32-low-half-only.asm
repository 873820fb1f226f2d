mov %r0, 0
lddw %r1, 0x100000005
jeq32 %r1, 5, l1
exit
l1:
mov %r0, 1
lddw %r2, 0x8000000000000001
jslt32 %r2, 0, fail
mov %r0, 2
lddw %r3, 0xffffffff
jslt32 %r3, 0, l2
exit
l2:
mov %r0, 3
lddw %r4, 0x200000005
jeq32 %r1, %r4, l3
exit
l3:
mov %r0, 4
exit
fail:
mov %r0, -1
exit
