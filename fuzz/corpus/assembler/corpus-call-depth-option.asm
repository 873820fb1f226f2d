mov %r1, 1
call local f
exit
f:
mov %r0, 0
jeq %r1, 0, done
sub %r1, 1
call local f
add %r0, 1
done:
exit
