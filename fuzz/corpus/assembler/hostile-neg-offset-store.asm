stdw [%r1-8], 0
exit
