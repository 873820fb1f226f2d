add %r10, 8
exit
