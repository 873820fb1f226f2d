/*
 * Embedding bpfvm from C: every operation of the C API, each result
 * checked. Exits 0 and prints "embed.c: all N checks passed" on success;
 * prints each failed check and exits 1 otherwise.
 *
 *   cc -Wall -Wextra -Werror -I capi/include examples/c/embed.c \
 *      -L target/release -lbpfvm -Wl,-rpath,$PWD/target/release -lpthread -o embed
 *   ./embed examples/c/sum.bpf.o
 *
 * The ELF object is built from examples/c/sum.bpf.c.
 */
#include <bpfvm.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, failures;

#define CHECK(cond, what)                                                              \
    do {                                                                               \
        checks++;                                                                      \
        if (!(cond)) {                                                                 \
            failures++;                                                                \
            fprintf(stderr, "FAIL %s:%d: %s: %s (last error: %s)\n", __FILE__, __LINE__, \
                    what, #cond, bpfvm_last_error());                                  \
        }                                                                              \
    } while (0)

/* A call that must succeed. */
#define OK(call) CHECK((call) == BPFVM_OK, #call)
/* A call that must fail with `code` and leave a message. */
#define FAILS(call, code)                                                              \
    do {                                                                               \
        int rc_ = (call);                                                              \
        CHECK(rc_ == (code), #call " returns " #code);                                 \
        if (rc_ != (code))                                                             \
            fprintf(stderr, "  got %d (%s)\n", rc_, bpfvm_error_name(rc_));            \
        CHECK(bpfvm_last_error()[0] != '\0', "a message for " #call);                  \
    } while (0)

/* One instruction, little endian: opcode, dst/src, offset, immediate. */
#define INSN(op, dst, src, off, imm)                                                   \
    (uint8_t)(op), (uint8_t)((dst) | ((src) << 4)), (uint8_t)((off) & 0xff),           \
        (uint8_t)(((off) >> 8) & 0xff), (uint8_t)((imm) & 0xff),                       \
        (uint8_t)(((imm) >> 8) & 0xff), (uint8_t)(((imm) >> 16) & 0xff),               \
        (uint8_t)(((uint32_t)(imm) >> 24) & 0xff)

/* r0 = 42; exit */
static const uint8_t RET42[] = {INSN(0xb7, 0, 0, 0, 42), INSN(0x95, 0, 0, 0, 0)};

/* r0 = *(u8 *)(r1 + 0); *(u8 *)(r1 + 1) = r0; exit */
static const uint8_t COPY_BYTE[] = {INSN(0x71, 0, 1, 0, 0), INSN(0x73, 1, 0, 1, 0),
                                    INSN(0x95, 0, 0, 0, 0)};

/* r0 = *(u64 *)(r1 + 64): out of bounds for a small buffer. */
static const uint8_t OOB_LOAD[] = {INSN(0x79, 0, 1, 64, 0), INSN(0x95, 0, 0, 0, 0)};

/* pc 0: call pc 0 (a bpf-to-bpf call to itself); exit: endless recursion. */
static const uint8_t RECURSE[] = {INSN(0x85, 0, 1, 0, -1), INSN(0x95, 0, 0, 0, 0)};

/* r1 = map_val(map_by_fd(5)) + 8 (lddw src 2); r0 = *(u64 *)r1;
 * r3 = map_by_fd(7) (lddw src 1); r0 += r3; exit */
static const uint8_t LDDW_MAPS[] = {
    INSN(0x18, 1, 2, 0, 5), INSN(0, 0, 0, 0, 8), INSN(0x79, 0, 1, 0, 0),
    INSN(0x18, 3, 1, 0, 7), INSN(0, 0, 0, 0, 0), INSN(0x0f, 0, 3, 0, 0),
    INSN(0x95, 0, 0, 0, 0)};

/* Calls helper 1 (mix) and helper 2 (count, with a context). */
static const char *HELPERS_ASM = "mov %r1, 20\n"
                                 "mov %r2, 22\n"
                                 "call 1\n"
                                 "mov %r1, %r0\n"
                                 "call 2\n"
                                 "exit\n";

/* Counts forever (2^64 iterations): only a budget stops it. */
static const char *SPIN_ASM = "mov %r0, 0\n"
                              "loop:\n"
                              "add %r0, 1\n"
                              "jne %r0, 0, loop\n"
                              "exit\n";

/* ---- Host side: helpers and lddw hooks ------------------------------ */

/* Helper 1: a * 1000 + b. */
static uint64_t mix(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e)
{
    (void)c, (void)d, (void)e;
    return a * 1000 + b;
}

struct counter {
    uint64_t calls;
    uint64_t bias;
};

/* Helper 2: counts its calls in *user and returns r1 + bias. */
static uint64_t count(void *user, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e)
{
    struct counter *k = user;
    (void)b, (void)c, (void)d, (void)e;
    __atomic_fetch_add(&k->calls, 1, __ATOMIC_RELAXED);
    return a + k->bias;
}

/* "Maps": fd 5 is a table of four u64, fd 7 only a handle. */
static uint64_t table[4] = {10, 20, 30, 40};
/* The ELF object's .bss (map 0), where `counter` lives. */
static uint64_t bss[1];

#define MAP_HANDLE(fd) (0xf000u + (fd))

static uint64_t map_by_fd(uint32_t fd)
{
    return MAP_HANDLE(fd);
}

static uint64_t map_val(uint64_t map)
{
    if (map == MAP_HANDLE(5))
        return (uint64_t)(uintptr_t)table;
    if (map == MAP_HANDLE(0))
        return (uint64_t)(uintptr_t)bss;
    return 0;
}

static uint64_t var_addr(uint32_t imm)
{
    return 0xa000u + imm;
}

/* ---- Helpers of the example --------------------------------------- */

static int have_llvm, have_cranelift;

static bpfvm_engine *engine_with(int policy, int tier)
{
    struct bpfvm_config config;
    bpfvm_engine *engine = NULL;
    OK(bpfvm_config_init(&config));
    config.tier_policy = policy;
    config.fixed_tier = tier;
    OK(bpfvm_engine_create(&config, &engine));
    return engine;
}

static uint64_t run(bpfvm_program *program, void *mem, size_t len)
{
    uint64_t r0 = 0;
    struct bpfvm_trap trap;
    OK(bpfvm_program_run(program, mem, len, &r0, &trap));
    CHECK(trap.kind == BPFVM_TRAP_KIND_NONE, "no trap");
    return r0;
}

static int tier_of(bpfvm_program *program)
{
    int tier = -100;
    OK(bpfvm_program_tier(program, &tier));
    return tier;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    data = malloc((size_t)n + 1);
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* ---- The checks ------------------------------------------------------ */

static void check_config(void)
{
    struct bpfvm_config config;
    bpfvm_engine *engine = (bpfvm_engine *)1;
    int yes = -1;

    OK(bpfvm_tier_available(BPFVM_TIER_INTERP, &yes));
    CHECK(yes == 1, "the interpreter is always there");
    OK(bpfvm_tier_available(BPFVM_TIER_LLVM, &have_llvm));
    OK(bpfvm_tier_available(BPFVM_TIER_CRANELIFT, &have_cranelift));
    FAILS(bpfvm_tier_available(7, &yes), BPFVM_E_INVALID);
    FAILS(bpfvm_tier_available(BPFVM_TIER_INTERP, NULL), BPFVM_E_NULL);

    OK(bpfvm_config_init(&config));
    CHECK(config.struct_size == sizeof config, "struct_size");
    CHECK(config.tier_policy == BPFVM_POLICY_TIERED && config.memory_checks && config.call_depth == 8,
          "defaults");
    FAILS(bpfvm_config_init(NULL), BPFVM_E_NULL);

    /* Misuse: no output pointer, a config never initialised, bad values. */
    FAILS(bpfvm_engine_create(NULL, NULL), BPFVM_E_NULL);
    config.struct_size = 0;
    FAILS(bpfvm_engine_create(&config, &engine), BPFVM_E_INVALID);
    CHECK(engine == NULL, "*engine is NULL on failure");
    OK(bpfvm_config_init(&config));
    config.tier_policy = 9;
    FAILS(bpfvm_engine_create(&config, &engine), BPFVM_E_INVALID);
    OK(bpfvm_config_init(&config));
    config.tier_policy = BPFVM_POLICY_FIXED;
    config.fixed_tier = 12;
    FAILS(bpfvm_engine_create(&config, &engine), BPFVM_E_INVALID);
    config.fixed_tier = BPFVM_TIER_INTERP;
    config.call_depth = 0;
    FAILS(bpfvm_engine_create(&config, &engine), BPFVM_E_INVALID);
    if (!have_llvm) {
        OK(bpfvm_config_init(&config));
        config.tier_policy = BPFVM_POLICY_FIXED;
        config.fixed_tier = BPFVM_TIER_LLVM;
        FAILS(bpfvm_engine_create(&config, &engine), BPFVM_E_UNSUPPORTED);
    }
    /* NULL config: the defaults. */
    OK(bpfvm_engine_create(NULL, &engine));
    OK(bpfvm_engine_destroy(engine));
}

static void check_load_and_run(void)
{
    bpfvm_engine *engine = engine_with(BPFVM_POLICY_FIXED, BPFVM_TIER_INTERP);
    bpfvm_program *p = NULL, *q = (bpfvm_program *)1;
    uint8_t mem[2] = {7, 0};
    uint64_t r0 = 99;
    struct bpfvm_trap trap;

    OK(bpfvm_engine_load(engine, RET42, sizeof RET42, &p));
    CHECK(run(p, NULL, 0) == 42, "r0 = 42");
    CHECK(tier_of(p) == BPFVM_TIER_INTERP, "fixed interp");
    OK(bpfvm_program_destroy(p));

    OK(bpfvm_engine_load(engine, COPY_BYTE, sizeof COPY_BYTE, &p));
    CHECK(run(p, mem, sizeof mem) == 7, "reads the input");
    CHECK(mem[1] == 7, "writes the input");

    /* Misuse of run. */
    FAILS(bpfvm_program_run(p, mem, sizeof mem, NULL, NULL), BPFVM_E_NULL);
    FAILS(bpfvm_program_run(p, NULL, 8, &r0, NULL), BPFVM_E_NULL);
    FAILS(bpfvm_program_run(NULL, mem, sizeof mem, &r0, NULL), BPFVM_E_NULL);
    OK(bpfvm_program_destroy(p));

    /* Traps: out of bounds. */
    OK(bpfvm_engine_load(engine, OOB_LOAD, sizeof OOB_LOAD, &p));
    memset(&trap, 0x55, sizeof trap);
    FAILS(bpfvm_program_run(p, mem, sizeof mem, &r0, &trap), BPFVM_E_TRAP);
    CHECK(trap.kind == BPFVM_TRAP_KIND_OUT_OF_BOUNDS_LOAD, "out-of-bounds load");
    CHECK(trap.pc == 0, "at pc 0");
    CHECK(trap.addr == (uint64_t)(uintptr_t)mem + 64, "at mem + 64");
    CHECK(strstr(trap.message, "out-of-bounds load") != NULL, trap.message);
    CHECK(strlen(trap.message) < sizeof trap.message, "message is terminated");
    CHECK(strstr(bpfvm_last_error(), "out-of-bounds") != NULL, "the trap is the last error");
    CHECK(r0 == 0, "r0 = 0 on a trap");
    /* The trap record is optional. */
    FAILS(bpfvm_program_run(p, mem, sizeof mem, &r0, NULL), BPFVM_E_TRAP);
    OK(bpfvm_program_destroy(p));

    /* Traps: call depth. */
    OK(bpfvm_engine_load(engine, RECURSE, sizeof RECURSE, &p));
    FAILS(bpfvm_program_run(p, NULL, 0, &r0, &trap), BPFVM_E_TRAP);
    CHECK(trap.kind == BPFVM_TRAP_KIND_CALL_DEPTH_EXCEEDED, "call depth");
    OK(bpfvm_program_destroy(p));

    /* Load errors. */
    FAILS(bpfvm_engine_load(engine, RET42, 5, &q), BPFVM_E_LOAD);
    CHECK(q == NULL, "*program is NULL on failure");
    FAILS(bpfvm_engine_load(engine, NULL, 16, &q), BPFVM_E_NULL);
    FAILS(bpfvm_engine_load(engine, RET42, 0, &q), BPFVM_E_LOAD);
    FAILS(bpfvm_engine_load(engine, RET42, sizeof RET42, NULL), BPFVM_E_NULL);
    FAILS(bpfvm_engine_load(NULL, RET42, sizeof RET42, &q), BPFVM_E_NULL);
    FAILS(bpfvm_engine_load_asm(engine, "mov %r0, 1\ncall 99\nexit", &q), BPFVM_E_LOAD);
    CHECK(strstr(bpfvm_last_error(), "helper 99") != NULL, "names the helper");
    FAILS(bpfvm_engine_load_asm(engine, "bogus %r0", &q), BPFVM_E_LOAD);
    FAILS(bpfvm_engine_load_asm(engine, NULL, &q), BPFVM_E_NULL);
    /* A pseudo lddw without hooks: map_val is needed. */
    FAILS(bpfvm_engine_load(engine, LDDW_MAPS, sizeof LDDW_MAPS, &q), BPFVM_E_LOAD);
    OK(bpfvm_engine_destroy(engine));
}

static void check_budget_and_depth(void)
{
    struct bpfvm_config config;
    bpfvm_engine *engine = NULL;
    bpfvm_program *p = NULL;
    uint64_t r0;
    struct bpfvm_trap trap;
    int tiers[3] = {BPFVM_TIER_INTERP, BPFVM_TIER_CRANELIFT, BPFVM_TIER_LLVM};
    int avail[3] = {1, have_cranelift, have_llvm};

    for (int k = 0; k < 3; k++) {
        if (!avail[k])
            continue;
        OK(bpfvm_config_init(&config));
        config.tier_policy = BPFVM_POLICY_FIXED;
        config.fixed_tier = tiers[k];
        config.instruction_budget = 1000;
        config.call_depth = 3;
        OK(bpfvm_engine_create(&config, &engine));
        OK(bpfvm_engine_load_asm(engine, SPIN_ASM, &p));
        CHECK(tier_of(p) == tiers[k], "the fixed tier");
        FAILS(bpfvm_program_run(p, NULL, 0, &r0, &trap), BPFVM_E_TRAP);
        CHECK(trap.kind == BPFVM_TRAP_KIND_BUDGET_EXHAUSTED, "budget on every tier");
        OK(bpfvm_program_destroy(p));
        OK(bpfvm_engine_load(engine, RECURSE, sizeof RECURSE, &p));
        FAILS(bpfvm_program_run(p, NULL, 0, &r0, &trap), BPFVM_E_TRAP);
        CHECK(trap.kind == BPFVM_TRAP_KIND_CALL_DEPTH_EXCEEDED, "depth 3 on every tier");
        CHECK(strstr(trap.message, "3 frames") != NULL, trap.message);
        OK(bpfvm_program_destroy(p));
        OK(bpfvm_engine_destroy(engine));
    }
}

static void check_helpers(void)
{
    bpfvm_engine *engine = engine_with(BPFVM_POLICY_FIXED, BPFVM_TIER_INTERP);
    bpfvm_program *p = NULL;
    struct counter k = {0, 5};

    FAILS(bpfvm_engine_register_helper(engine, 1, "mix", NULL), BPFVM_E_NULL);
    FAILS(bpfvm_engine_register_helper(NULL, 1, "mix", mix), BPFVM_E_NULL);
    FAILS(bpfvm_engine_register_helper(engine, BPFVM_HELPER_ID_LIMIT, "big", mix), BPFVM_E_INVALID);
    OK(bpfvm_engine_register_helper(engine, 1, "mix", mix));
    /* Not yet: helper 2 is missing. */
    FAILS(bpfvm_engine_load_asm(engine, HELPERS_ASM, &p), BPFVM_E_LOAD);
    OK(bpfvm_engine_register_helper_ctx(engine, 2, NULL, count, &k));
    OK(bpfvm_engine_load_asm(engine, HELPERS_ASM, &p));
    CHECK(run(p, NULL, 0) == 20 * 1000 + 22 + 5, "mix(20, 22) + bias");
    CHECK(run(p, NULL, 0) == 20027, "again");
    CHECK(k.calls == 2, "helper 2 saw its context twice");
    if (have_cranelift) {
        OK(bpfvm_program_compile(p, BPFVM_TIER_CRANELIFT));
        CHECK(tier_of(p) == BPFVM_TIER_CRANELIFT, "recompiled on cranelift");
        CHECK(run(p, NULL, 0) == 20027, "helpers from cranelift code");
    }
    if (have_llvm) {
        OK(bpfvm_program_compile(p, BPFVM_TIER_LLVM));
        CHECK(tier_of(p) == BPFVM_TIER_LLVM, "compiled on llvm");
        CHECK(run(p, NULL, 0) == 20027, "helpers from llvm code");
        OK(bpfvm_program_compile(p, BPFVM_TIER_AOT));
        CHECK(tier_of(p) == BPFVM_TIER_AOT, "compiled to an AOT object and loaded");
        CHECK(run(p, NULL, 0) == 20027, "helpers from AOT code");
    }
    OK(bpfvm_program_destroy(p));
    OK(bpfvm_engine_destroy(engine));
}

static void check_lddw(void)
{
    bpfvm_engine *engine = engine_with(BPFVM_POLICY_FIXED, BPFVM_TIER_INTERP);
    bpfvm_program *p = NULL;
    uint64_t r0;
    struct bpfvm_trap trap;
    int tiers[3] = {BPFVM_TIER_INTERP, BPFVM_TIER_CRANELIFT, BPFVM_TIER_LLVM};
    int avail[3] = {1, have_cranelift, have_llvm};

    OK(bpfvm_engine_set_lddw_helpers(engine, map_by_fd, NULL, map_val, var_addr, NULL));
    /* Checked memory: the table is not accessible yet. */
    OK(bpfvm_engine_load(engine, LDDW_MAPS, sizeof LDDW_MAPS, &p));
    FAILS(bpfvm_program_run(p, NULL, 0, &r0, &trap), BPFVM_E_TRAP);
    CHECK(trap.kind == BPFVM_TRAP_KIND_OUT_OF_BOUNDS_LOAD, "the table is not a region");
    CHECK(trap.addr == (uint64_t)(uintptr_t)&table[1], "at table[1]");
    OK(bpfvm_program_destroy(p));

    FAILS(bpfvm_engine_add_region(engine, NULL, 8, 0), BPFVM_E_NULL);
    FAILS(bpfvm_engine_add_region(engine, table, 0, 0), BPFVM_E_INVALID);
    OK(bpfvm_engine_add_region(engine, table, sizeof table, 0));
    OK(bpfvm_engine_load(engine, LDDW_MAPS, sizeof LDDW_MAPS, &p));
    for (int k = 0; k < 3; k++) {
        if (!avail[k])
            continue;
        OK(bpfvm_program_compile(p, tiers[k]));
        CHECK(run(p, NULL, 0) == table[1] + MAP_HANDLE(7), "table[1] + map_by_fd(7)");
    }
    OK(bpfvm_program_destroy(p));

    /* src 3 (var_addr) and src 4 (code_addr, not set). */
    OK(bpfvm_engine_load_asm(engine, "lddw %r0, 0\nexit", &p));
    OK(bpfvm_program_destroy(p));
    {
        static const uint8_t VAR[] = {INSN(0x18, 0, 3, 0, 9), INSN(0, 0, 0, 0, 0),
                                      INSN(0x95, 0, 0, 0, 0)};
        static const uint8_t CODE[] = {INSN(0x18, 0, 4, 0, 2), INSN(0, 0, 0, 0, 0),
                                       INSN(0x95, 0, 0, 0, 0), INSN(0x95, 0, 0, 0, 0)};
        OK(bpfvm_engine_load(engine, VAR, sizeof VAR, &p));
        CHECK(run(p, NULL, 0) == 0xa009, "var_addr(9)");
        OK(bpfvm_program_destroy(p));
        FAILS(bpfvm_engine_load(engine, CODE, sizeof CODE, &p), BPFVM_E_LOAD);
        CHECK(strstr(bpfvm_last_error(), "code_addr") != NULL, "names the missing hook");
    }
    OK(bpfvm_engine_destroy(engine));
}

static void check_elf(const char *path)
{
    bpfvm_engine *engine = engine_with(BPFVM_POLICY_FIXED, BPFVM_TIER_INTERP);
    bpfvm_program *p = NULL;
    size_t len = 0;
    uint8_t *elf = read_file(path, &len);
    uint8_t mem[4] = {1, 2, 3, 4};

    CHECK(elf != NULL, path);
    if (!elf)
        return;
    OK(bpfvm_engine_register_helper(engine, 1, "mix", mix));
    OK(bpfvm_engine_load_elf(engine, elf, len, "sum_bytes", &p));
    CHECK(run(p, mem, sizeof mem) == 10 * 1000 + 4, "sum_bytes = mix(10, 4)");
    OK(bpfvm_program_destroy(p));
    OK(bpfvm_engine_load_elf(engine, elf, len, "answer", &p));
    CHECK(run(p, NULL, 0) == 42, "answer");
    OK(bpfvm_program_destroy(p));

    /* A global variable through the lddw hooks: map 0 is .bss. */
    FAILS(bpfvm_engine_load_elf(engine, elf, len, "bump", &p), BPFVM_E_LOAD);
    OK(bpfvm_engine_set_lddw_helpers(engine, map_by_fd, NULL, map_val, NULL, NULL));
    OK(bpfvm_engine_add_region(engine, bss, sizeof bss, 1));
    OK(bpfvm_engine_load_elf(engine, elf, len, "bump", &p));
    CHECK(run(p, NULL, 0) == 1 && run(p, NULL, 0) == 2, "bump counts");
    CHECK(bss[0] == 2, "in the host's memory");
    OK(bpfvm_program_destroy(p));

    FAILS(bpfvm_engine_load_elf(engine, elf, len, "missing", &p), BPFVM_E_ELF);
    CHECK(strstr(bpfvm_last_error(), "sum_bytes") != NULL, "lists the programs");
    FAILS(bpfvm_engine_load_elf(engine, elf, len / 2, "answer", &p), BPFVM_E_ELF);
    FAILS(bpfvm_engine_load_elf(engine, RET42, sizeof RET42, "answer", &p), BPFVM_E_ELF);
    FAILS(bpfvm_engine_load_elf(engine, elf, len, NULL, &p), BPFVM_E_NULL);
    free(elf);
    OK(bpfvm_engine_destroy(engine));
}

static void check_tiering(void)
{
    struct bpfvm_config config;
    bpfvm_engine *engine = NULL;
    bpfvm_program *p = NULL;
    struct bpfvm_stats stats;
    uint8_t mem[2] = {3, 0};

    OK(bpfvm_config_init(&config));
    config.tier_policy = BPFVM_POLICY_TIERED;
    config.call_threshold = 2;
    config.synchronous_tier_up = 1;
    config.cross_check = 1;
    OK(bpfvm_engine_create(&config, &engine));
    OK(bpfvm_engine_load(engine, COPY_BYTE, sizeof COPY_BYTE, &p));
    CHECK(tier_of(p) == (have_cranelift ? BPFVM_TIER_CRANELIFT : BPFVM_TIER_INTERP), "tier 0");
    for (int i = 0; i < 5; i++)
        CHECK(run(p, mem, sizeof mem) == 3, "runs while tiering");
    OK(bpfvm_program_stats(p, &stats));
    CHECK(stats.calls == 5, "5 calls");
    if (have_llvm) {
        CHECK(tier_of(p) == BPFVM_TIER_LLVM, "promoted after 2 calls");
        CHECK(stats.tier == BPFVM_TIER_LLVM && stats.calls_llvm >= 3, "calls on tier 1");
        CHECK(stats.compile_ns_llvm > 0, "tier-1 compile time");
        CHECK(stats.cross_checks >= 3 && stats.mismatches == 0, "cross-checked");
    }
    CHECK(stats.last_error[sizeof stats.last_error - 1] == 0, "terminated");
    FAILS(bpfvm_program_stats(p, NULL), BPFVM_E_NULL);

    /* Explicit tiers, and AUTO. */
    OK(bpfvm_program_compile(p, BPFVM_TIER_INTERP));
    CHECK(tier_of(p) == BPFVM_TIER_INTERP, "pinned to interp");
    OK(bpfvm_program_stats(p, &stats));
    CHECK(stats.calls == 0, "statistics start again");
    CHECK(run(p, mem, sizeof mem) == 3, "runs on interp");
    OK(bpfvm_program_compile(p, BPFVM_TIER_AUTO));
    CHECK(tier_of(p) == (have_cranelift ? BPFVM_TIER_CRANELIFT : BPFVM_TIER_INTERP),
          "AUTO: back under the tiered policy, on tier 0");
    CHECK(run(p, mem, sizeof mem) == 3 && run(p, mem, sizeof mem) == 3, "runs");
    if (have_llvm)
        CHECK(tier_of(p) == BPFVM_TIER_LLVM, "promoted again after 2 calls");
    OK(bpfvm_program_compile(p, BPFVM_TIER_AUTO));
    FAILS(bpfvm_program_compile(p, 42), BPFVM_E_INVALID);
    FAILS(bpfvm_program_tier(p, NULL), BPFVM_E_NULL);
    if (!have_llvm)
        FAILS(bpfvm_program_compile(p, BPFVM_TIER_LLVM), BPFVM_E_UNSUPPORTED);
    OK(bpfvm_program_destroy(p));
    OK(bpfvm_engine_destroy(engine));
}

static void check_output(void)
{
    bpfvm_engine *engine = engine_with(BPFVM_POLICY_FIXED, BPFVM_TIER_INTERP);
    bpfvm_program *p = NULL, *aot = NULL, *gpu = NULL;
    size_t needed = 0;
    char small[4];
    char *text;
    uint8_t *obj;
    struct bpfvm_stats stats;
    struct counter k = {0, 1};

    OK(bpfvm_engine_register_helper(engine, 1, "mix", mix));
    OK(bpfvm_engine_register_helper_ctx(engine, 2, "count", count, &k));
    OK(bpfvm_engine_load_asm(engine, HELPERS_ASM, &p));
    if (!have_llvm) {
        FAILS(bpfvm_program_emit_llvm_ir(p, 1, NULL, 0, &needed), BPFVM_E_UNSUPPORTED);
        FAILS(bpfvm_program_emit_ptx(p, NULL, NULL, 0, &needed), BPFVM_E_UNSUPPORTED);
        FAILS(bpfvm_program_write_aot(p, NULL, NULL, 0, &needed), BPFVM_E_UNSUPPORTED);
        FAILS(bpfvm_engine_load_aot(engine, RET42, sizeof RET42, NULL, &aot), BPFVM_E_UNSUPPORTED);
        OK(bpfvm_program_destroy(p));
        OK(bpfvm_engine_destroy(engine));
        return;
    }

    /* LLVM IR: ask for the size, then a buffer too small, then the text. */
    FAILS(bpfvm_program_emit_llvm_ir(p, 1, NULL, 0, &needed), BPFVM_E_BUFFER_TOO_SMALL);
    CHECK(needed > 100, "IR size");
    FAILS(bpfvm_program_emit_llvm_ir(p, 1, small, sizeof small, &needed),
          BPFVM_E_BUFFER_TOO_SMALL);
    FAILS(bpfvm_program_emit_llvm_ir(p, 1, NULL, needed, &needed), BPFVM_E_NULL);
    text = malloc(needed);
    OK(bpfvm_program_emit_llvm_ir(p, 1, text, needed, NULL));
    CHECK(strstr(text, "define") != NULL, "IR defines a function");
    CHECK(strlen(text) + 1 == needed, "needed counts the NUL");
    free(text);

    /* PTX: helpers do not exist on the GPU; a program without them. */
    FAILS(bpfvm_program_emit_ptx(p, "sm_70", NULL, 0, &needed), BPFVM_E_COMPILE);
    CHECK(strstr(bpfvm_last_error(), "helper") != NULL, "says why");
    OK(bpfvm_engine_load(engine, COPY_BYTE, sizeof COPY_BYTE, &gpu));
    FAILS(bpfvm_program_emit_ptx(gpu, "sm_70", NULL, 0, &needed), BPFVM_E_BUFFER_TOO_SMALL);
    text = malloc(needed);
    OK(bpfvm_program_emit_ptx(gpu, "sm_70", text, needed, &needed));
    CHECK(strstr(text, ".target sm_70") != NULL, "PTX for sm_70");
    free(text);
    OK(bpfvm_program_destroy(gpu));

    /* An AOT object, loaded back and run: helpers work through it. */
    FAILS(bpfvm_program_write_aot(p, NULL, NULL, 0, &needed), BPFVM_E_BUFFER_TOO_SMALL);
    obj = malloc(needed);
    OK(bpfvm_program_write_aot(p, NULL, obj, needed, &needed));
    CHECK(memcmp(obj, "\x7f" "ELF", 4) == 0, "an ELF object");
    OK(bpfvm_engine_load_aot(engine, obj, needed, NULL, &aot));
    CHECK(tier_of(aot) == BPFVM_TIER_AOT, "runs native code");
    CHECK(run(aot, NULL, 0) == 20 * 1000 + 22 + 1, "AOT r0");
    OK(bpfvm_program_stats(aot, &stats));
    CHECK(stats.tier == BPFVM_TIER_AOT && stats.calls == 1 && stats.calls_llvm == 1, "AOT stats");
    /* An AOT program has no bytecode; it runs only its native code. */
    FAILS(bpfvm_program_emit_llvm_ir(aot, 0, NULL, 0, &needed), BPFVM_E_UNSUPPORTED);
    FAILS(bpfvm_program_compile(aot, BPFVM_TIER_INTERP), BPFVM_E_UNSUPPORTED);
    OK(bpfvm_program_compile(aot, BPFVM_TIER_AOT));
    OK(bpfvm_program_destroy(aot));
    FAILS(bpfvm_engine_load_aot(engine, obj, needed, "no_such_entry", &aot), BPFVM_E_AOT);
    FAILS(bpfvm_engine_load_aot(engine, obj, 64, NULL, &aot), BPFVM_E_AOT);
    free(obj);
    OK(bpfvm_program_destroy(p));

    /* An AOT object with lddw: its hooks are the engine's, called at run time. */
    OK(bpfvm_engine_set_lddw_helpers(engine, map_by_fd, NULL, map_val, NULL, NULL));
    OK(bpfvm_engine_add_region(engine, table, sizeof table, 0));
    OK(bpfvm_engine_load(engine, LDDW_MAPS, sizeof LDDW_MAPS, &p));
    FAILS(bpfvm_program_write_aot(p, "lddw_main", NULL, 0, &needed), BPFVM_E_BUFFER_TOO_SMALL);
    obj = malloc(needed);
    OK(bpfvm_program_write_aot(p, "lddw_main", obj, needed, &needed));
    OK(bpfvm_engine_load_aot(engine, obj, needed, "lddw_main", &aot));
    table[1] = 21;
    CHECK(run(aot, NULL, 0) == 21 + MAP_HANDLE(7), "AOT lddw through the hooks");
    table[1] = 20;
    OK(bpfvm_program_destroy(aot));
    free(obj);
    OK(bpfvm_program_destroy(p));
    OK(bpfvm_engine_destroy(engine));
}

static void check_handles(void)
{
    bpfvm_engine *engine = engine_with(BPFVM_POLICY_FIXED, BPFVM_TIER_INTERP);
    bpfvm_engine *gone = engine_with(BPFVM_POLICY_FIXED, BPFVM_TIER_INTERP);
    bpfvm_program *p = NULL, *q = NULL;
    uint64_t r0 = 0;

    OK(bpfvm_engine_load(engine, RET42, sizeof RET42, &p));
    /* The engine goes; its program stays. */
    OK(bpfvm_engine_destroy(engine));
    CHECK(run(p, NULL, 0) == 42, "a program outlives its engine");
    FAILS(bpfvm_engine_load(engine, RET42, sizeof RET42, &q), BPFVM_E_HANDLE);
    FAILS(bpfvm_engine_destroy(engine), BPFVM_E_HANDLE);
    FAILS(bpfvm_engine_register_helper(engine, 1, NULL, mix), BPFVM_E_HANDLE);
    /* A program is not an engine, nor an engine a program. */
    FAILS(bpfvm_engine_destroy((bpfvm_engine *)p), BPFVM_E_HANDLE);
    FAILS(bpfvm_program_destroy((bpfvm_program *)gone), BPFVM_E_HANDLE);
    CHECK(run(p, NULL, 0) == 42, "still alive");
    /* Pointers that were never handles. */
    FAILS(bpfvm_program_run((bpfvm_program *)&r0, NULL, 0, &r0, NULL), BPFVM_E_HANDLE);
    FAILS(bpfvm_engine_destroy((bpfvm_engine *)(uintptr_t)7), BPFVM_E_HANDLE);
    /* Use after destroy, double destroy. */
    OK(bpfvm_program_destroy(p));
    FAILS(bpfvm_program_run(p, NULL, 0, &r0, NULL), BPFVM_E_HANDLE);
    FAILS(bpfvm_program_destroy(p), BPFVM_E_HANDLE);
    FAILS(bpfvm_program_stats(p, NULL), BPFVM_E_HANDLE);
    FAILS(bpfvm_program_destroy(NULL), BPFVM_E_NULL);
    FAILS(bpfvm_engine_destroy(NULL), BPFVM_E_NULL);
    OK(bpfvm_engine_destroy(gone));

    CHECK(strcmp(bpfvm_error_name(BPFVM_E_HANDLE), "BPFVM_E_HANDLE") == 0, "error names");
    CHECK(strcmp(bpfvm_error_name(-1000), "BPFVM_E_UNKNOWN") == 0, "unknown code");
}

/* ---- Many threads, one program -------------------------------------- */

#define THREADS 4
#define RUNS 2000

struct worker {
    bpfvm_program *program;
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < RUNS; i++) {
        uint8_t mem[2] = {(uint8_t)i, 0};
        uint64_t r0 = 0;
        if (bpfvm_program_run(w->program, mem, sizeof mem, &r0, NULL) != BPFVM_OK ||
            r0 != (uint8_t)i || mem[1] != (uint8_t)i)
            w->failures++;
    }
    return NULL;
}

/* Runs until its program handle is destroyed under it. */
static void *work_until_gone(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        uint8_t mem[2] = {9, 0};
        uint64_t r0 = 0;
        int rc = bpfvm_program_run(w->program, mem, sizeof mem, &r0, NULL);
        if (rc == BPFVM_E_HANDLE)
            return NULL;
        if (rc != BPFVM_OK || r0 != 9)
            w->failures++;
    }
}

static void check_threads(void)
{
    struct bpfvm_config config;
    bpfvm_engine *engine = NULL;
    bpfvm_program *p = NULL;
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    struct bpfvm_stats stats;

    /* Tiered, promoting in the background while the threads run. */
    OK(bpfvm_config_init(&config));
    config.call_threshold = 500;
    OK(bpfvm_engine_create(&config, &engine));
    OK(bpfvm_engine_load(engine, COPY_BYTE, sizeof COPY_BYTE, &p));
    for (int t = 0; t < THREADS; t++) {
        workers[t].program = p;
        workers[t].failures = 0;
        CHECK(pthread_create(&threads[t], NULL, work, &workers[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        CHECK(workers[t].failures == 0, "every concurrent run is right");
    }
    OK(bpfvm_program_stats(p, &stats));
    CHECK(stats.calls == THREADS * RUNS, "every call counted");
    /* Wait for the background tier-1 compile (if still in flight) before
     * the program goes: see "Shutdown" in bpfvm.h. */
    if (have_llvm) {
        OK(bpfvm_program_compile(p, BPFVM_TIER_LLVM));
        CHECK(tier_of(p) == BPFVM_TIER_LLVM, "promoted");
    }
    OK(bpfvm_program_destroy(p));
    OK(bpfvm_engine_destroy(engine));

    /* Misuse: destroying a program while threads run it. The calls in
     * flight finish; later ones get BPFVM_E_HANDLE; nothing crashes. */
    engine = engine_with(BPFVM_POLICY_FIXED, have_cranelift ? BPFVM_TIER_CRANELIFT : BPFVM_TIER_INTERP);
    OK(bpfvm_engine_load(engine, COPY_BYTE, sizeof COPY_BYTE, &p));
    for (int t = 0; t < THREADS; t++) {
        workers[t].program = p;
        workers[t].failures = 0;
        CHECK(pthread_create(&threads[t], NULL, work_until_gone, &workers[t]) == 0,
              "pthread_create");
    }
    for (int i = 0; i < 200; i++) {
        uint8_t mem[2] = {9, 0};
        uint64_t r0 = 0;
        if (bpfvm_program_run(p, mem, sizeof mem, &r0, NULL) != BPFVM_OK || r0 != 9)
            break;
    }
    OK(bpfvm_program_destroy(p));
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        CHECK(workers[t].failures == 0, "runs are right until the handle goes");
    }
    OK(bpfvm_engine_destroy(engine));
}

int main(int argc, char **argv)
{
    const char *elf = argc > 1 ? argv[1] : "examples/c/sum.bpf.o";

    check_config();
    printf("tiers: interp%s%s\n", have_cranelift ? " cranelift" : "", have_llvm ? " llvm" : "");
    check_load_and_run();
    check_budget_and_depth();
    check_helpers();
    check_lddw();
    check_elf(elf);
    check_tiering();
    check_output();
    check_handles();
    check_threads();

    if (failures) {
        fprintf(stderr, "embed.c: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("embed.c: all %d checks passed\n", checks);
    return 0;
}
