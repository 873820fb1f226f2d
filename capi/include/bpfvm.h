/*
 * bpfvm.h: the C API of bpfvm, a userspace eBPF virtual machine with
 * tiered execution (interpreter, Cranelift JIT, LLVM JIT), AOT objects
 * and PTX output.
 *
 * Link with -lbpfvm (libbpfvm.so or libbpfvm.a, built by
 * `cargo build --release -p bpfvm-capi`); see README.md, "Using bpfvm from C".
 *
 * Conventions
 * -----------
 * - Every function returns an int: BPFVM_OK (0) on success, a negative
 *   enum bpfvm_error code on failure, except bpfvm_last_error() and
 *   bpfvm_error_name(), which return strings.
 * - On failure, bpfvm_last_error() gives the message. It is per thread,
 *   and successful calls leave it unchanged.
 * - Output parameters are written on success; handle outputs
 *   (bpfvm_engine **, bpfvm_program **) are set to NULL on failure.
 * - No function aborts the process on misuse: NULL pointers, destroyed
 *   handles, handles of the wrong kind, buffers too small and programs
 *   that trap are all error codes. An internal bug is BPFVM_E_INTERNAL,
 *   never an unwind into C.
 *
 * Handles and thread safety
 * -------------------------
 * - bpfvm_engine: may be shared between threads; every engine function may
 *   be called concurrently on the same engine.
 * - bpfvm_program: bpfvm_program_run may be called from many threads at
 *   once on the same program (each with its own memory); so may every
 *   other program function.
 * - destroy: do not destroy a handle while another thread uses it, nor use
 *   it afterwards. bpfvm makes both safe to get wrong: handles are ids
 *   checked against a registry of live handles (ids are never reused), so
 *   using a destroyed handle, destroying it twice, passing a handle that
 *   was never created or one of the other kind returns BPFVM_E_HANDLE; a
 *   call already running when its handle is destroyed finishes normally.
 *   Not detected: a forged value that equals a live handle of the same
 *   kind, and memory passed with a wrong length.
 * - Programs stay valid after their engine is destroyed.
 * - Shutdown: under the tiered policy, tier-1 compiles run on background
 *   threads, which bpfvm does not join. A process that exits while one is
 *   in flight may crash in LLVM's exit-time destructors. Before exiting,
 *   call bpfvm_program_compile(program, BPFVM_TIER_LLVM) on hot tiered
 *   programs (it waits for a compile in flight), or configure
 *   synchronous_tier_up.
 * - Host callbacks are called on the caller's thread: helpers from the
 *   threads that run programs, lddw hooks from those that load or compile
 *   them (and run AOT objects); never from bpfvm's background compile
 *   threads. They must not unwind (C++ exceptions, longjmp) into bpfvm.
 */
#ifndef BPFVM_H
#define BPFVM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. */
enum bpfvm_error {
    BPFVM_OK = 0,
    /* A required pointer argument is NULL. */
    BPFVM_E_NULL = -1,
    /* An argument is out of range: an unknown tier or policy, a
     * configuration not made by bpfvm_config_init, text that is not UTF-8. */
    BPFVM_E_INVALID = -2,
    /* A handle is not live: destroyed, never created, or of the other kind. */
    BPFVM_E_HANDLE = -3,
    /* The program was rejected at load (truncated bytecode, assembler
     * error, verifier, an lddw the hooks cannot resolve). */
    BPFVM_E_LOAD = -4,
    /* The ELF object cannot be parsed, or has no program of that name. */
    BPFVM_E_ELF = -5,
    /* A tier failed to compile the program. */
    BPFVM_E_COMPILE = -6,
    /* The operation needs a tier this build lacks (llvm, cranelift), or
     * does not apply to the program (emitting from an AOT-loaded program). */
    BPFVM_E_UNSUPPORTED = -7,
    /* The program trapped; struct bpfvm_trap says where and why. */
    BPFVM_E_TRAP = -8,
    /* The caller's buffer is too small; *needed holds the size needed. */
    BPFVM_E_BUFFER_TOO_SMALL = -9,
    /* An AOT object cannot be loaded. */
    BPFVM_E_AOT = -10,
    /* An internal error (a bug in bpfvm) was caught before it reached C. */
    BPFVM_E_INTERNAL = -11
};

/* Tiers. */
enum bpfvm_tier {
    /* Let the tiering policy decide (bpfvm_program_compile only). */
    BPFVM_TIER_AUTO = -1,
    /* The reference interpreter: always available, always checks memory. */
    BPFVM_TIER_INTERP = 0,
    /* Tier 0: the Cranelift JIT. */
    BPFVM_TIER_CRANELIFT = 1,
    /* Tier 1: the LLVM JIT. */
    BPFVM_TIER_LLVM = 2,
    /* Tier 1's native code through an AOT object loaded in process. */
    BPFVM_TIER_AOT = 3
};

/* Tier policies. */
enum bpfvm_tier_policy {
    /* Always config.fixed_tier, compiled at load. */
    BPFVM_POLICY_FIXED = 0,
    /* Start on tier 0 (Cranelift, or the interpreter without it); promote to
     * tier 1 (LLVM) in the background after call_threshold calls or
     * instruction_threshold tier-0 instructions. */
    BPFVM_POLICY_TIERED = 1,
    /* Compile tier 1 at load (tier 0 if tier 1 fails). */
    BPFVM_POLICY_EAGER = 2
};

/* Trap kinds (struct bpfvm_trap.kind); the numbers are the trap codes of
 * bpfvm's AOT objects. */
enum bpfvm_trap_kind {
    /* The program exited. */
    BPFVM_TRAP_KIND_NONE = 0,
    /* Out-of-bounds load: addr. */
    BPFVM_TRAP_KIND_OUT_OF_BOUNDS_LOAD = 1,
    /* Out-of-bounds store or atomic: addr. */
    BPFVM_TRAP_KIND_OUT_OF_BOUNDS_STORE = 2,
    /* The instruction budget is exhausted (pc: the block start). */
    BPFVM_TRAP_KIND_BUDGET_EXHAUSTED = 3,
    /* Too many nested bpf-to-bpf calls. */
    BPFVM_TRAP_KIND_CALL_DEPTH_EXCEEDED = 4,
    /* callx of a helper that is not registered: addr = the id. */
    BPFVM_TRAP_KIND_UNKNOWN_HELPER = 5,
    /* A helper failed: addr = the id. */
    BPFVM_TRAP_KIND_HELPER_FAILED = 6,
    /* A misaligned atomic access: addr. */
    BPFVM_TRAP_KIND_MISALIGNED_ATOMIC = 7,
    /* Any other trap. */
    BPFVM_TRAP_KIND_UNKNOWN = 8
};

/* Limits. */
enum bpfvm_limits {
    /* Helper ids are below this. */
    BPFVM_HELPER_ID_LIMIT = 65536
};

/* An engine: configuration, helpers, lddw hooks, host regions. Opaque. */
typedef struct bpfvm_engine bpfvm_engine;
/* A loaded program. Opaque. */
typedef struct bpfvm_program bpfvm_program;

/* A helper: r1 to r5 in, r0 out. */
typedef uint64_t (*bpfvm_helper_fn)(uint64_t r1, uint64_t r2, uint64_t r3,
                                    uint64_t r4, uint64_t r5);
/* A helper that also receives the host's context pointer. */
typedef uint64_t (*bpfvm_helper_ctx_fn)(void *user, uint64_t r1, uint64_t r2,
                                        uint64_t r3, uint64_t r4, uint64_t r5);

/* The engine configuration. Fill it with bpfvm_config_init, then change
 * fields. */
struct bpfvm_config {
    /* sizeof(struct bpfvm_config), set by bpfvm_config_init. */
    uint32_t struct_size;
    /* BPFVM_POLICY_FIXED, _TIERED (the default) or _EAGER. */
    int tier_policy;
    /* The tier of BPFVM_POLICY_FIXED (BPFVM_TIER_INTERP, ...). */
    int fixed_tier;
    /* Tiered: promote to tier 1 after this many calls... */
    uint64_t call_threshold;
    /* ...or after this many instructions executed on tier 0. */
    uint64_t instruction_threshold;
    /* Non-zero: check every memory access (the default). */
    int memory_checks;
    /* Instructions one run may execute before it traps; 0: no budget. */
    uint64_t instruction_budget;
    /* Call-depth limit in frames (1 to 1024; default 8). */
    uint32_t call_depth;
    /* Background threads that compile tier 1 (at least 1); tier 0 has
     * helper threads of its own (bpfvm_set_tier0_helper_threads). */
    uint32_t compile_threads;
    /* LLVM optimisation level, 0 to 3. */
    uint32_t llvm_opt_level;
    /* Cranelift optimisation level, 0 to 3 (default 1: full register
     * allocation, no optimisation pass; 0 compiles fastest; 2 and 3 add
     * Cranelift's optimiser). */
    uint32_t cranelift_opt_level;
    /* Non-zero: compile tier 1 on the calling thread when the threshold is
     * crossed (deterministic, for tests). */
    int synchronous_tier_up;
    /* Non-zero: cross-check promoted code against cross_check_reference. */
    int cross_check;
    /* The trusted tier of cross-checks (default BPFVM_TIER_INTERP). */
    int cross_check_reference;
    /* Cross-check every one of the first N calls after promotion... */
    uint64_t cross_check_first;
    /* ...then one call in N (0: never). */
    uint64_t cross_check_one_in;
    /* Failed tier-1 compiles after which a program stops trying. */
    uint32_t max_compile_failures;
};

/* How a run ended early. */
struct bpfvm_trap {
    /* BPFVM_TRAP_KIND_* (_NONE when the program exited). */
    int kind;
    /* The instruction that trapped (the block start for budget traps). */
    uint64_t pc;
    /* The faulting address, or the helper id for helper traps, else 0. */
    uint64_t addr;
    /* The trap as text, NUL-terminated (truncated to fit). */
    char message[128];
};

/* A program's statistics. Calls and compile times are per tier; an AOT
 * object's calls count as calls_llvm (tier 1's native code). */
struct bpfvm_stats {
    /* The tier calls run on now (BPFVM_TIER_*). */
    int tier;
    /* Calls in all. */
    uint64_t calls;
    uint64_t calls_interp;
    uint64_t calls_cranelift;
    uint64_t calls_llvm;
    /* Time spent compiling each tier, in nanoseconds. */
    uint64_t compile_ns_interp;
    uint64_t compile_ns_cranelift;
    uint64_t compile_ns_llvm;
    /* Instructions executed on tier 0 (counted towards promotion). */
    uint64_t tier0_instructions;
    /* Calls cross-checked against the reference tier, and mismatches found. */
    uint64_t cross_checks;
    uint64_t mismatches;
    /* Failed tier-1 compiles. */
    uint32_t compile_failures;
    /* The last tier-1 compile error, NUL-terminated (empty if none). */
    char last_error[256];
};

/* ---- Errors -------------------------------------------------------- */

/* The text of the last error on the calling thread: empty before any
 * error, unchanged by calls that succeed. The pointer stays valid until
 * the next failing bpfvm call on the same thread. Never NULL. */
const char *bpfvm_last_error(void);

/* The name of an error code ("BPFVM_E_TRAP"), or "BPFVM_E_UNKNOWN".
 * The string is static. */
const char *bpfvm_error_name(int code);

/* ---- Configuration ------------------------------------------------- */

/* Fills *config with the defaults: tiered policy (1000 calls or 10^7
 * tier-0 instructions), memory checks on, no instruction budget, call
 * depth 8, one compile thread, LLVM O3, Cranelift level 1, no cross-checks. */
int bpfvm_config_init(struct bpfvm_config *config);

/* Sets *available to 1 when this build has `tier`, else 0. */
int bpfvm_tier_available(int tier, int *available);

/* Sets how many helper threads tier 0 (Cranelift) may use, process-wide,
 * to compile a program's functions, and the pieces of a large one, in
 * parallel with the thread that compiles it: by default up to 3, one fewer
 * than the CPUs; 0 compiles everything on the compiling thread; larger
 * numbers count as those bounds. It applies from the next compile on. */
int bpfvm_set_tier0_helper_threads(uint32_t n);

/* ---- Engines ------------------------------------------------------- */

/* Creates an engine. `config` NULL means the defaults (bpfvm_config_init).
 * On success *engine is the new handle; on failure it is NULL. A fixed
 * tier this build lacks is BPFVM_E_UNSUPPORTED. */
int bpfvm_engine_create(const struct bpfvm_config *config, bpfvm_engine **engine);

/* Destroys an engine. Programs loaded from it stay valid (they keep what
 * they need). A destroyed or unknown handle is BPFVM_E_HANDLE. */
int bpfvm_engine_destroy(bpfvm_engine *engine);

/* Registers (or replaces) helper `id` (below BPFVM_HELPER_ID_LIMIT) as
 * fn(r1, .., r5), for programs loaded afterwards (programs loaded earlier keep the helpers they were
 * loaded with). `name` may be NULL. `fn` must be callable from any thread
 * that runs a program, for as long as such a program lives. */
int bpfvm_engine_register_helper(bpfvm_engine *engine, uint32_t id, const char *name,
                                 bpfvm_helper_fn fn);

/* Like bpfvm_engine_register_helper, the helper also receiving `user`
 * (which bpfvm never dereferences; what it points to must be usable from
 * the threads that run programs, for as long as such a program lives). */
int bpfvm_engine_register_helper_ctx(bpfvm_engine *engine, uint32_t id, const char *name,
                                     bpfvm_helper_ctx_fn fn, void *user);

/* Sets the lddw hooks for programs loaded afterwards, as llvmbpf's
 * set_lddw_helpers. Any may be NULL. A pseudo lddw loads:
 *   src 1: map_by_fd(imm)                      (NULL hook: imm itself)
 *   src 2: map_val(map_by_fd(imm)) + next_imm  (needs map_val)
 *   src 3: var_addr(imm)                       (needs var_addr)
 *   src 4: code_addr(imm)                      (needs code_addr)
 *   src 5: map_by_idx(imm)                     (NULL hook: imm itself)
 *   src 6: map_val(map_by_idx(imm)) + next_imm (needs map_val)
 * The JIT tiers call the hooks once, at load; AOT objects loaded with
 * bpfvm_engine_load_aot call them when they run. A missing hook a program
 * needs is BPFVM_E_LOAD. With memory checks on, memory the hooks hand out
 * must also be added with bpfvm_engine_add_region. */
int bpfvm_engine_set_lddw_helpers(bpfvm_engine *engine,
                                  uint64_t (*map_by_fd)(uint32_t),
                                  uint64_t (*map_by_idx)(uint32_t),
                                  uint64_t (*map_val)(uint64_t),
                                  uint64_t (*var_addr)(uint32_t),
                                  uint64_t (*code_addr)(uint32_t));

/* Lets checked programs loaded afterwards access host memory
 * [start, start + len) (read-only unless `writable`). The memory must stay
 * valid for as long as any such program may run. */
int bpfvm_engine_add_region(bpfvm_engine *engine, void *start, size_t len, int writable);

/* Verifies and compiles raw bytecode (`len` bytes, 8 per instruction)
 * under the engine's policy. On success *program is the new handle; on
 * failure it is NULL. */
int bpfvm_engine_load(bpfvm_engine *engine, const void *code, size_t len,
                      bpfvm_program **program);

/* Assembles and loads assembler text (the conformance suite's syntax:
 * "mov %r0, 42\nexit"). */
int bpfvm_engine_load_asm(bpfvm_engine *engine, const char *text, bpfvm_program **program);

/* Loads program `name` of an ELF object (clang -target bpf): an entry
 * function by name, else the only program of section `name`, else a
 * .text function. Map references (lddw src 1 and 2, with the map's index
 * in the object as the "fd") go through the engine's lddw hooks. */
int bpfvm_engine_load_elf(bpfvm_engine *engine, const void *elf, size_t len,
                          const char *name, bpfvm_program **program);

/* Loads an AOT object made by bpfvm_program_write_aot (or `bpfvm compile`),
 * whose entry is `entry` (NULL: "bpf_main"). Its helpers are the engine's,
 * its __lddw_helper_* symbols the engine's lddw hooks, its memory checks
 * and budget those it was compiled with. Needs the llvm tier. */
int bpfvm_engine_load_aot(bpfvm_engine *engine, const void *object, size_t len,
                          const char *entry, bpfvm_program **program);

/* ---- Programs ------------------------------------------------------ */

/* Destroys a program. A destroyed or unknown handle is BPFVM_E_HANDLE. */
int bpfvm_program_destroy(bpfvm_program *program);

/* Compiles the program at `tier` now and makes its calls run there:
 * - BPFVM_TIER_LLVM: tier 1, waiting for the compile (a tier-up under the
 *   tiered policy; the program can still be demoted by a cross-check, and
 *   a later tier-up runs the code compiled the first time again).
 * - BPFVM_TIER_INTERP, _CRANELIFT, _AOT: recompiles the program at that
 *   tier and pins it there (no promotion; statistics start again).
 * - BPFVM_TIER_AUTO: let tiering decide: a pinned program goes back under
 *   the engine's policy (recompiled as at load; statistics start again);
 *   otherwise nothing to do.
 * Already on `tier`: nothing to do. A tier this build lacks is
 * BPFVM_E_UNSUPPORTED; a failed compile BPFVM_E_COMPILE (the program keeps
 * running where it was). An AOT-loaded program accepts only
 * BPFVM_TIER_AOT and BPFVM_TIER_AUTO. */
int bpfvm_program_compile(bpfvm_program *program, int tier);

/* Sets *tier to the tier calls run on now (BPFVM_TIER_*). */
int bpfvm_program_tier(bpfvm_program *program, int *tier);

/* Runs the program over [mem, mem + len) (r1 = mem, r2 = len; both 0 when
 * len is 0). On exit: 0, *r0 set, *trap (if not NULL) of kind
 * BPFVM_TRAP_KIND_NONE. On a trap: BPFVM_E_TRAP, *r0 = 0, *trap filled, and
 * the trap's text as the last error. `r0` must not be NULL. */
int bpfvm_program_run(bpfvm_program *program, void *mem, size_t len, uint64_t *r0,
                      struct bpfvm_trap *trap);

/* Fills *stats with the program's statistics. They count from the load, or
 * from the last bpfvm_program_compile that recompiled the program (any
 * tier but BPFVM_TIER_LLVM, which promotes it). */
int bpfvm_program_stats(bpfvm_program *program, struct bpfvm_stats *stats);

/* ---- Output: LLVM IR, PTX, AOT objects ------------------------------
 * Each takes `buf`, its capacity `cap` and `needed`: when `cap` is too
 * small the answer is BPFVM_E_BUFFER_TOO_SMALL with *needed set (pass buf
 * NULL and cap 0 to ask for the size); `needed` may be NULL. The last
 * output is kept, so the call after a size query does not compile again.
 * All need the llvm tier (else BPFVM_E_UNSUPPORTED), and a program loaded
 * from bytecode (not from an AOT object). */

/* Writes the program's LLVM IR (optimised at the engine's LLVM level when
 * `optimized`), NUL-terminated, into buf. *needed counts the NUL. */
int bpfvm_program_emit_llvm_ir(bpfvm_program *program, int optimized, char *buf, size_t cap,
                               size_t *needed);

/* Writes the program as PTX for nvptx64-nvidia-cuda at `sm` (NULL:
 * "sm_60"), NUL-terminated, into buf. *needed counts the NUL. */
int bpfvm_program_emit_ptx(bpfvm_program *program, const char *sm, char *buf, size_t cap,
                           size_t *needed);

/* Writes a relocatable native object for the host into buf. Its entry
 * `entry` (NULL: "bpf_main") is callable from C as
 * uint64_t entry(void *mem, uint64_t len); it is compiled with the
 * engine's memory checks, budget, call depth and LLVM level. Load it back
 * with bpfvm_engine_load_aot, or link it into a host (helpers are the
 * undefined symbols _bpf_helper_ext_NNNN, as in llvmbpf). */
int bpfvm_program_write_aot(bpfvm_program *program, const char *entry, void *buf, size_t cap,
                            size_t *needed);

#ifdef __cplusplus
}
#endif

#endif /* BPFVM_H */
