stdw [%r10-520], 7
exit
