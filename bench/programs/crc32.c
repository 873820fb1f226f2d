/* Checksum over a buffer: CRC-32 (IEEE, reflected), bit by bit, no table. */
#include "bpf_bench.h"

ENTRY {
    const u8 *p = mem;
    u32 crc = 0xffffffff;
    for (u64 i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320 & -(crc & 1));
    }
    return ~crc;
}
