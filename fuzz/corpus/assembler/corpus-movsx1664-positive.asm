lddw %r1, 0xffffffffffff7fff
movsx1664 %r0, %r1
exit
