lddw %r1, 0x100000000
stxdw [%r10-8], %r1
mov %r2, 1
lock fetch or [%r10-8], %r2
mov %r3, 3
lock fetch xor [%r10-8], %r3
mov %r4, 5
lock fetch add [%r10-8], %r4
ldxdw %r0, [%r10-8]
add %r0, %r2
add %r0, %r3
add %r0, %r4
exit
