lddw %r1, 0xfffffffffffffffe
stw [%r1+0], 1
exit
