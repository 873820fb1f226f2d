ja +5
exit
