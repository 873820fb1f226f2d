lddw %r3, 0xffffffffffffffff
add %r1, %r3
ldxb %r0, [%r1+0]
exit
