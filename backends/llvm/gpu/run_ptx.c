// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Runs the `bpf_kernel` of a PTX file written by `bpfvm emit ptx` on an
// NVIDIA GPU, through the CUDA driver API loaded at run time (libcuda.so.1,
// so that no CUDA toolkit is needed to build this):
//
//   run_ptx KERNEL.ptx MEM.bin PER_THREAD_LEN THREADS [MEM_OUT.bin]
//   run_ptx --batch LIST     (one line per case, see run_batch)
//
// MEM.bin holds THREADS slices of PER_THREAD_LEN bytes; thread i runs the
// program over slice i (r1 = its address, r2 = PER_THREAD_LEN). Prints one
// line per thread: its r0 in decimal, or `trap` when the kernel stored
// UINT64_MAX (the kernel's trap marker, see backends/llvm/src/ptx.rs).
// With MEM_OUT.bin, the memory after the run is written there.
//
// Build: cc -O2 -o run_ptx backends/llvm/gpu/run_ptx.c -ldl
// Used by scripts/check-ptx-gpu.py, which compares every thread with the
// interpreter.

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef unsigned long long CUdeviceptr;

static CUresult (*cuInit)(unsigned);
static CUresult (*cuDeviceGet)(CUdevice *, int);
static CUresult (*cuCtxCreate)(CUcontext *, unsigned, CUdevice);
static CUresult (*cuModuleLoadData)(CUmodule *, const void *);
static CUresult (*cuModuleUnload)(CUmodule);
static CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
static CUresult (*cuMemFree)(CUdeviceptr);
static CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
static CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
static CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                                  unsigned, unsigned, CUstream, void **, void **);
static CUresult (*cuCtxSynchronize)(void);
static CUresult (*cuGetErrorString)(CUresult, const char **);

// The case being run, named in fatal errors.
static const char *current = "setup";

static void die(const char *what) {
    fprintf(stderr, "run_ptx: %s: %s\n", current, what);
    exit(2);
}

static void check(CUresult r, const char *what) {
    if (r == 0) return;
    const char *msg = "unknown error";
    if (cuGetErrorString) cuGetErrorString(r, &msg);
    fprintf(stderr, "run_ptx: %s: %s: %s (%d)\n", current, what, msg, r);
    exit(2);
}

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "run_ptx: libcuda has no %s\n", name);
        exit(2);
    }
    return p;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek");
    long n = ftell(f);
    if (n < 0) die("cannot tell");
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) die("out of memory");
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) die("short read");
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

// Runs one kernel over MEM (THREADS slices of PER bytes); writes each
// thread's result line to `results` and, when `mem_out` is not NULL, the
// memory afterwards. Returns NULL, or why the case could not run (the PTX
// did not load); a fault on the GPU ends the process (the context is lost).
static const char *run_case(const char *ptx_path, const char *mem_path, uint64_t per, uint64_t n,
                            FILE *results, const char *mem_out) {
    static char why[512];
    size_t ptx_len, mem_len;
    current = ptx_path;
    char *ptx = slurp(ptx_path, &ptx_len);
    char *mem = slurp(mem_path, &mem_len);
    if (n == 0 || n > (1u << 24)) die("THREADS must be 1 to 2^24");
    if (per != 0 && n > SIZE_MAX / per) die("PER_THREAD_LEN * THREADS overflows");
    if (mem_len != per * n) die("MEM.bin must hold PER_THREAD_LEN * THREADS bytes");

    CUmodule module;
    CUfunction kernel;
    CUresult r = cuModuleLoadData(&module, ptx);
    if (r != 0) {
        const char *msg = "unknown error";
        cuGetErrorString(r, &msg);
        snprintf(why, sizeof why, "loading %s: %s (%d)", ptx_path, msg, r);
        free(ptx);
        free(mem);
        return why;
    }
    check(cuModuleGetFunction(&kernel, module, "bpf_kernel"), "finding bpf_kernel");

    CUdeviceptr d_mem = 0, d_results;
    size_t mem_bytes = mem_len ? mem_len : 1;
    check(cuMemAlloc(&d_mem, mem_bytes), "allocating memory");
    if (mem_len) check(cuMemcpyHtoD(d_mem, mem, mem_len), "copying memory");
    check(cuMemAlloc(&d_results, n * sizeof(uint64_t)), "allocating results");

    uint64_t count = n;
    void *params[] = {&d_mem, &per, &d_results, &count};
    unsigned block = 128;
    unsigned grid = (unsigned)((n + block - 1) / block);
    check(cuLaunchKernel(kernel, grid, 1, 1, block, 1, 1, 0, NULL, params, NULL), "launch");
    check(cuCtxSynchronize(), "running the kernel");

    uint64_t *out = malloc(n * sizeof(uint64_t));
    if (!out) die("out of memory");
    check(cuMemcpyDtoH(out, d_results, n * sizeof(uint64_t)), "copying results");
    for (uint64_t i = 0; i < n; i++) {
        if (out[i] == UINT64_MAX)
            fprintf(results, "trap\n");
        else
            fprintf(results, "%llu\n", (unsigned long long)out[i]);
    }
    if (mem_out) {
        if (mem_len) check(cuMemcpyDtoH(mem, d_mem, mem_len), "copying memory back");
        FILE *f = fopen(mem_out, "wb");
        if (!f || fwrite(mem, 1, mem_len, f) != mem_len) die("cannot write MEM_OUT.bin");
        fclose(f);
    }
    check(cuMemFree(d_mem), "freeing memory");
    check(cuMemFree(d_results), "freeing results");
    check(cuModuleUnload(module), "unloading the module");
    free(out);
    free(ptx);
    free(mem);
    return NULL;
}

static void load_driver(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) die("cannot load libcuda.so.1 (no NVIDIA driver?)");
    cuInit = sym(lib, "cuInit");
    cuDeviceGet = sym(lib, "cuDeviceGet");
    cuCtxCreate = sym(lib, "cuCtxCreate_v2");
    cuModuleLoadData = sym(lib, "cuModuleLoadData");
    cuModuleUnload = sym(lib, "cuModuleUnload");
    cuModuleGetFunction = sym(lib, "cuModuleGetFunction");
    cuMemAlloc = sym(lib, "cuMemAlloc_v2");
    cuMemFree = sym(lib, "cuMemFree_v2");
    cuMemcpyHtoD = sym(lib, "cuMemcpyHtoD_v2");
    cuMemcpyDtoH = sym(lib, "cuMemcpyDtoH_v2");
    cuLaunchKernel = sym(lib, "cuLaunchKernel");
    cuCtxSynchronize = sym(lib, "cuCtxSynchronize");
    cuGetErrorString = sym(lib, "cuGetErrorString");

    CUdevice dev;
    CUcontext ctx;
    check(cuInit(0), "cuInit");
    check(cuDeviceGet(&dev, 0), "cuDeviceGet");
    check(cuCtxCreate(&ctx, 0, dev), "cuCtxCreate");
}

// Batch mode: each line of LIST is `KERNEL.ptx MEM.bin PER THREADS
// RESULTS.txt MEM_OUT.bin`; one context runs them all. A case whose PTX
// does not load is reported on stderr and gets no RESULTS file.
static int run_batch(const char *list_path) {
    FILE *list = fopen(list_path, "r");
    if (!list) {
        perror(list_path);
        return 2;
    }
    char ptx[4096], mem[4096], res[4096], mem_out[4096];
    unsigned long long per, n;
    int failed = 0;
    while (fscanf(list, "%4095s %4095s %llu %llu %4095s %4095s", ptx, mem, &per, &n, res,
                  mem_out) == 6) {
        FILE *results = fopen(res, "w");
        if (!results) {
            perror(res);
            return 2;
        }
        const char *why = run_case(ptx, mem, per, n, results, mem_out);
        fclose(results);
        if (why) {
            fprintf(stderr, "run_ptx: %s\n", why);
            remove(res);
            failed = 1;
        }
    }
    if (!feof(list)) {
        fprintf(stderr, "run_ptx: %s: a line is not `KERNEL MEM PER THREADS RESULTS MEM_OUT`\n",
                list_path);
        return 2;
    }
    fclose(list);
    return failed;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--batch") == 0) {
        load_driver();
        return run_batch(argv[2]);
    }
    if (argc != 5 && argc != 6) {
        fprintf(stderr,
                "usage: %s KERNEL.ptx MEM.bin PER_THREAD_LEN THREADS [MEM_OUT.bin]\n"
                "       %s --batch LIST\n",
                argv[0], argv[0]);
        return 2;
    }
    load_driver();
    const char *why = run_case(argv[1], argv[2], strtoull(argv[3], NULL, 10),
                               strtoull(argv[4], NULL, 10), stdout, argc == 6 ? argv[5] : NULL);
    if (why) die(why);
    return 0;
}
