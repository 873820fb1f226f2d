mov %r1, 1
lock fetch add32 [%r10-6], %r1
exit
