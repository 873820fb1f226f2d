ja -1
