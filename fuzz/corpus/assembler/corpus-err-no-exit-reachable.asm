loop:
ja loop
exit
