mov %r2, 0
stxdw [%r2+16], %r2
exit
