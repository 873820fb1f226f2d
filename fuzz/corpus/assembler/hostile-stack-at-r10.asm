stb [%r10+0], 1
exit
