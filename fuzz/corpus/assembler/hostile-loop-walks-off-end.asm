mov %r0, 0
loop:
ldxb %r3, [%r1+0]
add %r0, %r3
add %r1, 1
jne %r1, 0, loop
exit
