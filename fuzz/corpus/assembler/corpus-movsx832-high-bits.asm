lddw %r1, 0xffffffff12345680
movsx832 %r0, %r1
exit
