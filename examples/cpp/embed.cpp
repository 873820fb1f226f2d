// Embedding bpfvm from C++: small RAII wrappers over the C API (handles in
// std::unique_ptr with custom deleters, errors as exceptions, helpers as
// lambdas), then a tour of the API. Exits 0 and prints
// "embed.cpp: all N checks passed" on success, 1 otherwise.
//
//   c++ -std=c++17 -Wall -Wextra -Werror -I capi/include examples/cpp/embed.cpp
//       -L target/release -lbpfvm -Wl,-rpath,$PWD/target/release -lpthread -o embed_cpp
//   ./embed_cpp examples/c/sum.bpf.o
#include <bpfvm.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bpfvm {

// A failed call: its code and bpfvm_last_error()'s text.
class Error : public std::runtime_error {
public:
    Error(int code, const std::string &what)
        : std::runtime_error(what + ": " + bpfvm_error_name(code) + ": " + bpfvm_last_error()),
          code_(code)
    {
    }
    int code() const noexcept { return code_; }

private:
    int code_;
};

// A run that trapped.
class Trap : public Error {
public:
    explicit Trap(const bpfvm_trap &trap) : Error(BPFVM_E_TRAP, "run"), trap_(trap) {}
    const bpfvm_trap &trap() const noexcept { return trap_; }

private:
    bpfvm_trap trap_;
};

inline void check(int rc, const char *what)
{
    if (rc != BPFVM_OK)
        throw Error(rc, what);
}

struct EngineDeleter {
    void operator()(bpfvm_engine *e) const noexcept { bpfvm_engine_destroy(e); }
};
struct ProgramDeleter {
    void operator()(bpfvm_program *p) const noexcept { bpfvm_program_destroy(p); }
};

using Helper = std::function<uint64_t(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t)>;
// The helpers' closures: shared by the engine and its programs, which may
// outlive it.
using HelperStore = std::vector<std::unique_ptr<Helper>>;

// Calls a Helper; exceptions must not cross into bpfvm.
extern "C" inline uint64_t call_helper(void *user, uint64_t a, uint64_t b, uint64_t c,
                                       uint64_t d, uint64_t e)
{
    try {
        return (*static_cast<Helper *>(user))(a, b, c, d, e);
    } catch (...) {
        return 0;
    }
}

// Fills a buffer through one of the size-query functions.
template <class T, class F> std::vector<T> fetch(F emit, const char *what)
{
    size_t needed = 0;
    int rc = emit(nullptr, 0, &needed);
    if (rc != BPFVM_E_BUFFER_TOO_SMALL)
        check(rc, what);
    std::vector<T> buf(needed);
    check(emit(buf.data(), buf.size(), &needed), what);
    return buf;
}

class Program {
public:
    Program(bpfvm_program *p, std::shared_ptr<HelperStore> helpers)
        : p_(p), helpers_(std::move(helpers))
    {
    }

    uint64_t run(void *mem = nullptr, size_t len = 0) const
    {
        uint64_t r0 = 0;
        bpfvm_trap trap;
        int rc = bpfvm_program_run(p_.get(), mem, len, &r0, &trap);
        if (rc == BPFVM_E_TRAP)
            throw Trap(trap);
        check(rc, "run");
        return r0;
    }
    uint64_t run(std::vector<uint8_t> &mem) const { return run(mem.data(), mem.size()); }

    void compile(int tier) { check(bpfvm_program_compile(p_.get(), tier), "compile"); }

    int tier() const
    {
        int t = 0;
        check(bpfvm_program_tier(p_.get(), &t), "tier");
        return t;
    }

    bpfvm_stats stats() const
    {
        bpfvm_stats s;
        check(bpfvm_program_stats(p_.get(), &s), "stats");
        return s;
    }

    std::string llvm_ir(bool optimized = true) const
    {
        auto text = fetch<char>(
            [&](char *buf, size_t cap, size_t *needed) {
                return bpfvm_program_emit_llvm_ir(p_.get(), optimized, buf, cap, needed);
            },
            "emit LLVM IR");
        return std::string(text.data());
    }

    std::string ptx(const char *sm = "sm_70") const
    {
        auto text = fetch<char>(
            [&](char *buf, size_t cap, size_t *needed) {
                return bpfvm_program_emit_ptx(p_.get(), sm, buf, cap, needed);
            },
            "emit PTX");
        return std::string(text.data());
    }

    std::vector<uint8_t> aot_object(const char *entry = nullptr) const
    {
        return fetch<uint8_t>(
            [&](uint8_t *buf, size_t cap, size_t *needed) {
                return bpfvm_program_write_aot(p_.get(), entry, buf, cap, needed);
            },
            "write AOT object");
    }

    bpfvm_program *handle() const noexcept { return p_.get(); }

private:
    std::unique_ptr<bpfvm_program, ProgramDeleter> p_;
    std::shared_ptr<HelperStore> helpers_;
};

class Engine {
public:
    // A default engine (tiered policy).
    Engine() : Engine(nullptr) {}

    explicit Engine(const bpfvm_config *config) : helpers_(std::make_shared<HelperStore>())
    {
        bpfvm_engine *e = nullptr;
        check(bpfvm_engine_create(config, &e), "create engine");
        e_.reset(e);
    }

    // An engine fixed at one tier.
    static Engine fixed(int tier)
    {
        bpfvm_config c;
        check(bpfvm_config_init(&c), "config");
        c.tier_policy = BPFVM_POLICY_FIXED;
        c.fixed_tier = tier;
        return Engine(&c);
    }

    // Registers helper `id`, any callable.
    void helper(uint32_t id, const char *name, Helper f)
    {
        helpers_->push_back(std::make_unique<Helper>(std::move(f)));
        check(bpfvm_engine_register_helper_ctx(e_.get(), id, name, call_helper,
                                               helpers_->back().get()),
              "register helper");
    }

    Program load(const std::vector<uint8_t> &bytecode) const
    {
        return adopt(bpfvm_engine_load, "load", bytecode.data(), bytecode.size());
    }
    Program load_asm(const char *text) const { return adopt(bpfvm_engine_load_asm, "load asm", text); }
    Program load_elf(const std::vector<uint8_t> &elf, const char *name) const
    {
        return adopt(bpfvm_engine_load_elf, "load ELF", elf.data(), elf.size(), name);
    }
    Program load_aot(const std::vector<uint8_t> &object, const char *entry = nullptr) const
    {
        return adopt(bpfvm_engine_load_aot, "load AOT", object.data(), object.size(), entry);
    }

    bpfvm_engine *handle() const noexcept { return e_.get(); }

private:
    template <class F, class... Args> Program adopt(F load, const char *what, Args... args) const
    {
        bpfvm_program *p = nullptr;
        check(load(e_.get(), args..., &p), what);
        return Program(p, helpers_);
    }

    std::unique_ptr<bpfvm_engine, EngineDeleter> e_;
    std::shared_ptr<HelperStore> helpers_;
};

inline bool available(int tier)
{
    int yes = 0;
    check(bpfvm_tier_available(tier, &yes), "tier available");
    return yes != 0;
}

} // namespace bpfvm

static int checks, failures;

static void expect(bool ok, const std::string &what)
{
    checks++;
    if (!ok) {
        failures++;
        std::cerr << "FAIL: " << what << " (last error: " << bpfvm_last_error() << ")\n";
    }
}

static std::vector<uint8_t> read_file(const char *path)
{
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

int main(int argc, char **argv)
{
    const char *elf_path = argc > 1 ? argv[1] : "examples/c/sum.bpf.o";
    const bool llvm = bpfvm::available(BPFVM_TIER_LLVM);

    try {
        // Fixed interpreter; a lambda helper with state.
        bpfvm::Engine engine = bpfvm::Engine::fixed(BPFVM_TIER_INTERP);
        std::atomic<uint64_t> calls{0};
        engine.helper(1, "mix", [&calls](uint64_t a, uint64_t b, uint64_t, uint64_t, uint64_t) {
            calls++;
            return a * 1000 + b;
        });

        bpfvm::Program answer = engine.load({0xb7, 0, 0, 0, 42, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0});
        expect(answer.run() == 42, "bytecode: r0 = 42");

        bpfvm::Program mixer = engine.load_asm("mov %r1, 4\nmov %r2, 2\ncall 1\nexit");
        expect(mixer.run() == 4002 && calls == 1, "lambda helper");

        // ELF by name.
        std::vector<uint8_t> elf = read_file(elf_path);
        bpfvm::Program sum = engine.load_elf(elf, "sum_bytes");
        std::vector<uint8_t> mem{1, 2, 3, 4};
        expect(sum.run(mem) == 10 * 1000 + 4, "ELF sum_bytes");

        // Traps and errors are exceptions.
        bpfvm::Program oob = engine.load_asm("ldxdw %r0, [%r1+64]\nexit");
        try {
            oob.run(mem);
            expect(false, "an out-of-bounds load traps");
        } catch (const bpfvm::Trap &t) {
            expect(t.trap().kind == BPFVM_TRAP_KIND_OUT_OF_BOUNDS_LOAD, "trap kind");
            expect(std::strstr(t.what(), "out-of-bounds") != nullptr, t.what());
        }
        try {
            engine.load_elf(elf, "missing");
            expect(false, "a missing program is an error");
        } catch (const bpfvm::Error &e) {
            expect(e.code() == BPFVM_E_ELF, e.what());
        }

        // Tiers, output, AOT.
        if (llvm) {
            mixer.compile(BPFVM_TIER_LLVM);
            expect(mixer.tier() == BPFVM_TIER_LLVM && mixer.run() == 4002, "LLVM tier");
            expect(mixer.llvm_ir().find("define") != std::string::npos, "LLVM IR");
            expect(answer.ptx().find(".target sm_70") != std::string::npos, "PTX");
            std::vector<uint8_t> object = mixer.aot_object();
            bpfvm::Program native = engine.load_aot(object);
            expect(native.tier() == BPFVM_TIER_AOT && native.run() == 4002, "AOT object");
        } else {
            try {
                mixer.llvm_ir();
                expect(false, "no LLVM IR without llvm");
            } catch (const bpfvm::Error &e) {
                expect(e.code() == BPFVM_E_UNSUPPORTED, e.what());
            }
        }
        bpfvm_stats stats = mixer.stats();
        expect(stats.calls >= 1, "stats");

        // Many threads, one program, on a tiered engine.
        bpfvm::Engine tiered;
        bpfvm::Program copy = tiered.load_asm("ldxb %r0, [%r1]\nstxb [%r1+1], %r0\nexit");
        std::atomic<int> wrong{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; t++)
            threads.emplace_back([&] {
                for (int i = 0; i < 1000; i++) {
                    std::vector<uint8_t> m{uint8_t(i), 0};
                    if (copy.run(m) != uint8_t(i) || m[1] != uint8_t(i))
                        wrong++;
                }
            });
        for (auto &t : threads)
            t.join();
        expect(wrong == 0 && copy.stats().calls == 4000, "concurrent runs");
        // Let an in-flight background tier-1 compile finish before the
        // program goes (see "Shutdown" in bpfvm.h).
        if (llvm)
            copy.compile(BPFVM_TIER_LLVM);

        // A program outlives its engine (and the engine's helpers live on).
        bpfvm::Program survivor = [] {
            bpfvm::Engine short_lived = bpfvm::Engine::fixed(BPFVM_TIER_INTERP);
            short_lived.helper(3, "seven", [](uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
                return uint64_t(7);
            });
            return short_lived.load_asm("call 3\nexit");
        }();
        expect(survivor.run() == 7, "program and helper outlive the engine");

        // The handle is gone once its owner is: bpfvm says so, no crash.
        bpfvm_program *raw = nullptr;
        {
            bpfvm::Program scoped = engine.load_asm("mov %r0, 1\nexit");
            raw = scoped.handle();
        }
        uint64_t r0 = 0;
        expect(bpfvm_program_run(raw, nullptr, 0, &r0, nullptr) == BPFVM_E_HANDLE,
               "use after destroy is BPFVM_E_HANDLE");
    } catch (const std::exception &e) {
        std::cerr << "FAIL: unexpected exception: " << e.what() << "\n";
        failures++;
    }

    if (failures) {
        std::cerr << "embed.cpp: " << failures << " of " << checks << " checks failed\n";
        return 1;
    }
    std::cout << "embed.cpp: all " << checks << " checks passed\n";
    return 0;
}
