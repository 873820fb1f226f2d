stb [%r1+8], 1
exit
