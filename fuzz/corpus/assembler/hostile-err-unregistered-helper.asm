call 99
exit
