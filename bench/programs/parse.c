/* A packet parser in the style of an XDP or tc program: the input is one
 * Ethernet frame. Every header is bounds-checked against the end pointer
 * before it is read (`if (p + n > end) return`), as the kernel's verifier
 * requires. Parses Ethernet, IPv4 (with options) or
 * IPv6 (with one hop-by-hop, routing or destination-options header), then
 * TCP, UDP or ICMP, and returns a flow hash with the verdict in its low
 * byte. About 300 instructions of eBPF: the shape of most eBPF programs
 * in production, for compile latency. */
#include "bpf_bench.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

enum { PASS = 1, DROP = 2, ABORT = 3 };

static inline u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static inline u32 be32(const u8 *p) {
    return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}
static inline u64 mix(u64 h, u64 v) {
    h ^= v;
    h *= 0x100000001b3ULL;
    return h ^ (h >> 29);
}

/* The transport header at `p`: its ports or ICMP type, into the hash. */
static NOINLINE u64 l4(const u8 *p, const u8 *end, u8 proto, u64 h) {
    if (proto == 6) {
        if (p + 20 > end)
            return ABORT;
        u8 doff = p[12] >> 4;
        if (doff < 5)
            return DROP;
        u8 flags = p[13];
        h = mix(h, (u64)be16(p) << 16 | be16(p + 2));
        h = mix(h, be32(p + 4));
        if ((flags & 0x03) == 0x03) /* SYN and FIN */
            return DROP;
        return (h & ~0xffULL) | PASS;
    }
    if (proto == 17) {
        if (p + 8 > end)
            return ABORT;
        u16 ulen = be16(p + 4);
        if (ulen < 8)
            return DROP;
        h = mix(h, (u64)be16(p) << 16 | be16(p + 2));
        return (h & ~0xffULL) | (be16(p + 2) == 53 ? DROP : PASS);
    }
    if (proto == 1 || proto == 58) {
        if (p + 4 > end)
            return ABORT;
        h = mix(h, (u64)p[0] << 8 | p[1]);
        return (h & ~0xffULL) | PASS;
    }
    return (h & ~0xffULL) | PASS;
}

static inline __attribute__((always_inline)) u64 ipv4(const u8 *ip, const u8 *end, u64 h) {
    if (ip + 20 > end)
        return ABORT;
    if ((ip[0] >> 4) != 4)
        return DROP;
    u8 ihl = ip[0] & 0x0f;
    if (ihl < 5)
        return DROP;
    u16 frag = be16(ip + 6);
    if (frag & 0x3fff) /* a fragment: no transport header to read */
        return (mix(h, be16(ip + 4)) & ~0xffULL) | PASS;
    if (ip[8] <= 1)
        return DROP;
    h = mix(h, be32(ip + 12));
    h = mix(h, be32(ip + 16));
    return l4(ip + ihl * 4, end, ip[9], h);
}

static inline __attribute__((always_inline)) u64 ipv6(const u8 *ip, const u8 *end, u64 h) {
    if (ip + 40 > end)
        return ABORT;
    if ((ip[0] >> 4) != 6)
        return DROP;
    if (ip[7] <= 1)
        return DROP;
    h = mix(h, be32(ip + 8) ^ be32(ip + 12));
    h = mix(h, be32(ip + 16) ^ be32(ip + 20));
    h = mix(h, be32(ip + 24) ^ be32(ip + 28));
    h = mix(h, be32(ip + 32) ^ be32(ip + 36));
    u8 next = ip[6];
    const u8 *p = ip + 40;
    if (next == 0 || next == 43 || next == 60) { /* one extension header */
        if (p + 8 > end)
            return ABORT;
        next = p[0];
        p += (p[1] + 1) * 8;
    }
    return l4(p, end, next, h);
}

/* After the Ethernet header, at `l3`, with EtherType `type`. */
static inline __attribute__((always_inline)) u64 l3(const u8 *l3, const u8 *end, u16 type, u64 h) {
    if (type == ETH_P_IP)
        return ipv4(l3, end, h);
    if (type == ETH_P_IPV6)
        return ipv6(l3, end, h);
    return PASS;
}

ENTRY {
    const u8 *data = mem;
    const u8 *end = data + len;
    if (data + 14 > end)
        return ABORT;
    if (data[0] & 1) /* a multicast destination */
        return PASS;
    u64 h = mix(0xcbf29ce484222325ULL, be32(data + 6) ^ be16(data + 10));
    return l3(data + 14, end, be16(data + 12), h);
}
