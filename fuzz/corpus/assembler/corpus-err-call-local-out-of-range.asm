call local +10
exit
