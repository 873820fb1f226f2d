mov %r0, 1
