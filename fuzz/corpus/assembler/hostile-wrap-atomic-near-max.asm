lddw %r1, 0xfffffffffffffffc
mov %r2, 1
lock add [%r1+0], %r2
exit
