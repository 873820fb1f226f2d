lddw %r0, 0x1234567800000007
mod %r0, 0
exit
