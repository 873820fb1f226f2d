mov %r0, 10
div %r0, -1
lddw %r1, 0xffffffffffffffff
div %r1, -1
lsh %r1, 1
add %r0, %r1
mov32 %r2, -1
div32 %r2, -1
lsh %r2, 2
add %r0, %r2
mov %r3, 10
mod %r3, -1
lsh %r3, 3
add %r0, %r3
exit
