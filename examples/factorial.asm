# SPDX-License-Identifier: MIT OR Apache-2.0
#
# 20! = 2432902008176640000, the largest factorial that fits in 64 bits.
#
#   bpfvm run examples/factorial.asm

mov %r0, 1
mov %r1, 20
loop:
mul %r0, %r1
sub %r1, 1
jne %r1, 0, loop
exit
