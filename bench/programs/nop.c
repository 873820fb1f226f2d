/* Call overhead: a trivial body. Input: 64 bytes. Returns len + 1. */
#include "bpf_bench.h"

ENTRY { return len + 1; }
