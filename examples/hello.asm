# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Upper-cases the ASCII letters of the input memory in place and returns how
# many letters it changed.
#
#   bpfvm run examples/hello.asm --mem examples/hello.mem --dump-mem
#
# prints r0 = 0xa (10) and the memory, now "HELLO, WORLD!".
# The program gets r1 = address of the memory, r2 = its length.

mov %r0, 0              # letters changed
mov %r3, %r1
add %r3, %r2            # r3 = end of the memory
loop:
jge %r1, %r3, done
ldxb %r4, [%r1+0]
jlt %r4, 0x61, next     # below 'a'
jgt %r4, 0x7a, next     # above 'z'
sub %r4, 0x20           # to upper case
stxb [%r1+0], %r4
add %r0, 1
next:
add %r1, 1
ja loop
done:
exit
