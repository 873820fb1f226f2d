stw [%r1+1], 1
exit
