lddw %r0, 0x500000007
lddw %r1, 0x100000000
mod %r0, %r1
exit
