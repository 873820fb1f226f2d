mov %r0, 0
sub32 %r0, 1
exit
