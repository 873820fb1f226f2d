//! The benchmark programs: each a C file in `bench/programs/`, compiled to
//! eBPF (the committed `<name>.bpf.o`) and natively (by `build.rs`), with
//! its input and the result it must return on that input.

/// `uint64_t bpf_main(void *mem, uint64_t len)` compiled natively.
pub type NativeFn = unsafe extern "C" fn(*mut u8, u64) -> u64;

/// A benchmark program.
#[derive(Clone, Copy)]
pub struct BenchProgram {
    pub name: &'static str,
    /// What it exercises, in a few words.
    pub what: &'static str,
    /// The eBPF object (`clang-19 -O2 -g -target bpf -mcpu=v3`); the entry
    /// is `bpf_main` in section `bench`.
    pub bpf_object: &'static [u8],
    /// The same C compiled natively with -O3 (`None` when the build found
    /// no C compiler).
    pub native: Option<NativeFn>,
    /// Its input memory (deterministic).
    pub input: fn() -> Vec<u8>,
    /// r0 on that input.
    pub expected: u64,
    /// Left out of the geometric means (the call-overhead program).
    pub trivial: bool,
    /// Uses a map (and so the helpers and regions of a loaded object).
    pub uses_maps: bool,
    /// Uses bpf-to-bpf calls.
    pub uses_calls: bool,
}

impl std::fmt::Debug for BenchProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchProgram")
            .field("name", &self.name)
            .field("expected", &self.expected)
            .finish()
    }
}

/// The compiler (with its flags) that built the native baseline, or
/// `None` when there is no baseline in this build.
pub fn native_compiler() -> Option<&'static str> {
    match option_env!("BPFVM_BENCH_NATIVE_CC") {
        Some("") | None => None,
        Some(s) => Some(s),
    }
}

#[cfg(bpfvm_native)]
mod native {
    extern "C" {
        pub fn native_nop(mem: *mut u8, len: u64) -> u64;
        pub fn native_alu_mix(mem: *mut u8, len: u64) -> u64;
        pub fn native_divmod(mem: *mut u8, len: u64) -> u64;
        pub fn native_memcpy(mem: *mut u8, len: u64) -> u64;
        pub fn native_memcmp(mem: *mut u8, len: u64) -> u64;
        pub fn native_search(mem: *mut u8, len: u64) -> u64;
        pub fn native_bitops(mem: *mut u8, len: u64) -> u64;
        pub fn native_switch(mem: *mut u8, len: u64) -> u64;
        pub fn native_calls(mem: *mut u8, len: u64) -> u64;
        pub fn native_map_lookup(mem: *mut u8, len: u64) -> u64;
        pub fn native_crc32(mem: *mut u8, len: u64) -> u64;
        pub fn native_fnv1a(mem: *mut u8, len: u64) -> u64;
        pub fn native_sort(mem: *mut u8, len: u64) -> u64;
        pub fn native_straight_line(mem: *mut u8, len: u64) -> u64;
        pub fn native_branchy(mem: *mut u8, len: u64) -> u64;
        pub fn native_parse(mem: *mut u8, len: u64) -> u64;
    }
}

macro_rules! native {
    ($f:ident) => {{
        #[cfg(bpfvm_native)]
        let f: Option<NativeFn> = Some(native::$f);
        #[cfg(not(bpfvm_native))]
        let f: Option<NativeFn> = None;
        f
    }};
}

macro_rules! object {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/programs/",
            $name,
            ".bpf.o"
        ))
    };
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn input_nop() -> Vec<u8> {
    random_bytes(1, 64)
}

fn input_alu_mix() -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[..4].copy_from_slice(&20_000u32.to_le_bytes());
    v[8..].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
    v
}

fn input_divmod() -> Vec<u8> {
    random_bytes(3, 4096)
}

fn input_memcpy() -> Vec<u8> {
    let mut v = random_bytes(4, 4096);
    v.resize(8192, 0);
    v
}

fn input_memcmp() -> Vec<u8> {
    let mut v = random_bytes(5, 4096);
    v.extend_from_within(..);
    let n = v.len();
    v[n - 5] ^= 0x5a;
    v
}

fn input_search() -> Vec<u8> {
    let mut v: Vec<u8> = random_bytes(6, 8192)
        .into_iter()
        .map(|b| b"abcd"[(b & 3) as usize])
        .collect();
    v[..4].copy_from_slice(b"abca");
    v
}

fn input_bitops() -> Vec<u8> {
    random_bytes(7, 4096)
}

fn input_switch() -> Vec<u8> {
    random_bytes(8, 8192)
}

fn input_calls() -> Vec<u8> {
    random_bytes(9, 4096)
}

fn input_map_lookup() -> Vec<u8> {
    random_bytes(10, 2048)
}

fn input_crc32() -> Vec<u8> {
    random_bytes(11, 2048)
}

fn input_fnv1a() -> Vec<u8> {
    random_bytes(12, 8192)
}

fn input_sort() -> Vec<u8> {
    let mut v = random_bytes(13, 1024);
    v.resize(2048, 0);
    v
}

fn input_straight_line() -> Vec<u8> {
    random_bytes(14, 2048)
}

fn input_branchy() -> Vec<u8> {
    random_bytes(15, 256)
}

/// One Ethernet frame: IPv4 with one word of options (IHL 6), TCP (ACK)
/// and 16 bytes of payload.
fn input_parse() -> Vec<u8> {
    let mut p = Vec::with_capacity(74);
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00]);
    // IPv4: version 4, IHL 6, total length 60, DF, TTL 64, TCP,
    // 10.0.0.1 -> 10.0.0.2, a no-op option word.
    p.extend_from_slice(&[0x46, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 1, 1, 1, 0]);
    // TCP: 49152 -> 443, sequence and acknowledgement numbers, data
    // offset 5, ACK, window 65535.
    p.extend_from_slice(&[0xc0, 0x00, 0x01, 0xbb, 0x11, 0x22, 0x33, 0x44]);
    p.extend_from_slice(&[0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(&random_bytes(16, 16));
    p
}

/// Every benchmark program.
pub static PROGRAMS: &[BenchProgram] = &[
    BenchProgram {
        name: "nop",
        what: "call overhead (trivial body)",
        bpf_object: object!("nop"),
        native: native!(native_nop),
        input: input_nop,
        expected: 65,
        trivial: true,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "alu_mix",
        what: "ALU-heavy loop (20,000 iterations)",
        bpf_object: object!("alu_mix"),
        native: native!(native_alu_mix),
        input: input_alu_mix,
        expected: EXPECTED[1],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "divmod",
        what: "division and modulo in a loop (4 KiB)",
        bpf_object: object!("divmod"),
        native: native!(native_divmod),
        input: input_divmod,
        expected: EXPECTED[2],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "memcpy",
        what: "byte copy loop (4 KiB)",
        bpf_object: object!("memcpy"),
        native: native!(native_memcpy),
        input: input_memcpy,
        expected: EXPECTED[3],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "memcmp",
        what: "byte compare loop (2 x 4 KiB)",
        bpf_object: object!("memcmp"),
        native: native!(native_memcmp),
        input: input_memcmp,
        expected: EXPECTED[4],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "search",
        what: "byte search for a 4-byte needle (8 KiB)",
        bpf_object: object!("search"),
        native: native!(native_search),
        input: input_search,
        expected: EXPECTED[5],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "bitops",
        what: "bit manipulation (popcount, reverse, clz; 4 KiB)",
        bpf_object: object!("bitops"),
        native: native!(native_bitops),
        input: input_bitops,
        expected: EXPECTED[6],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "switch",
        what: "16-way switch over data (4,096 dispatches)",
        bpf_object: object!("switch"),
        native: native!(native_switch),
        input: input_switch,
        expected: EXPECTED[7],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "calls",
        what: "bpf-to-bpf calls (3 per word, 512 words)",
        bpf_object: object!("calls"),
        native: native!(native_calls),
        input: input_calls,
        expected: EXPECTED[8],
        trivial: false,
        uses_maps: false,
        uses_calls: true,
    },
    BenchProgram {
        name: "map_lookup",
        what: "map_lookup_elem in a loop (2,112 calls)",
        bpf_object: object!("map_lookup"),
        native: native!(native_map_lookup),
        input: input_map_lookup,
        expected: EXPECTED[9],
        trivial: false,
        uses_maps: true,
        uses_calls: false,
    },
    BenchProgram {
        name: "crc32",
        what: "CRC-32, bitwise (2 KiB)",
        bpf_object: object!("crc32"),
        native: native!(native_crc32),
        input: input_crc32,
        expected: EXPECTED[10],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "fnv1a",
        what: "FNV-1a hash (8 KiB)",
        bpf_object: object!("fnv1a"),
        native: native!(native_fnv1a),
        input: input_fnv1a,
        expected: EXPECTED[11],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "sort",
        what: "insertion sort of 256 u32",
        bpf_object: object!("sort"),
        native: native!(native_sort),
        input: input_sort,
        expected: EXPECTED[12],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "straight_line",
        what: "straight-line code (~2,800 instructions)",
        bpf_object: object!("straight_line"),
        native: native!(native_straight_line),
        input: input_straight_line,
        expected: EXPECTED[13],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "branchy",
        what: "branchy code (~5,000 instructions, 512 branches)",
        bpf_object: object!("branchy"),
        native: native!(native_branchy),
        input: input_branchy,
        expected: EXPECTED[14],
        trivial: false,
        uses_maps: false,
        uses_calls: false,
    },
    BenchProgram {
        name: "parse",
        what: "packet parser: Ethernet, IPv4/IPv6, TCP/UDP/ICMP (~300 + 100 instructions)",
        bpf_object: object!("parse"),
        native: native!(native_parse),
        input: input_parse,
        expected: EXPECTED[15],
        trivial: false,
        uses_maps: false,
        uses_calls: true,
    },
];

/// The expected results, in [`PROGRAMS`] order.
const EXPECTED: [u64; 16] = [
    65,
    0x131c_c7b3_4fce_ca9b,
    0x0091_32e7_f58e_daeb,
    0x0010_0074_d602,
    0x000f_fb5a,
    0x001f_0000_1f64,
    0xc15a_a450_2a78_6434,
    0x2d81_34d2_8e99_ae8a,
    0xb7cb_e77d_c7a9_ee21,
    0x0029_520a,
    0x411b_0ff6,
    0xd5fd_2840_c17f_e1c9,
    0x57cf_e283_dbc0,
    0xb749_499a_e9fe_ba75,
    0x3a04_ada0_d194_cfb1,
    0x8050_747e_87ce_2801,
];

/// The program named `name`.
pub fn program(name: &str) -> Option<&'static BenchProgram> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// The program whose eBPF object is exactly `bytes`.
pub fn program_by_object(bytes: &[u8]) -> Option<&'static BenchProgram> {
    PROGRAMS.iter().find(|p| p.bpf_object == bytes)
}

impl BenchProgram {
    /// Runs the native build on `mem` (`None` without a baseline).
    pub fn run_native(&self, mem: &mut [u8]) -> Option<u64> {
        let f = self.native?;
        // SAFETY: the native programs read and write only `[mem, mem + len)`
        // (the same C that runs checked in the VM on the same input).
        Some(unsafe { f(mem.as_mut_ptr(), mem.len() as u64) })
    }
}

/// `bench/asm/straight_alu_300.asm`: 300 slots of straight 64-bit ALU
/// code ending in exit (BENCHMARKS.md session 19), the input of the floor
/// under tier 0's compile time (`floor`, `compile_floor/...`).
pub fn straight_alu_300() -> Vec<bpfvm::engine::isa::Insn> {
    let text = include_str!("../asm/straight_alu_300.asm");
    bpfvm::engine::asm::assemble(text).expect("bench/asm/straight_alu_300.asm assembles")
}
