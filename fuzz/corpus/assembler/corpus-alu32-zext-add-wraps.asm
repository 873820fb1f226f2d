lddw %r0, 0xffffffffffffffff
add32 %r0, 1
exit
