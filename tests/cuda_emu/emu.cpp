// The CUDA emulator's scheduler, runtime and BLAS (see emu.h).
#include "emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <vector>

#include <cblas.h>

#include "emu_internal.h"

// Switching fibers: on x86-64 a few instructions saving the callee-saved registers and the stack pointer (glibc's
// swapcontext also saves the signal mask with a system call each time, which made the emulated suite spend most
// of its time in the kernel); elsewhere, ucontext.
#if defined(__x86_64__)
extern "C" void emu_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .section .note.GNU-stack, "", @progbits
    .text
)");
#define EMU_FAST_SWITCH 1
#endif

namespace emu {

enum State { RUNNABLE, AT_BARRIER, AT_SHUFFLE, DONE };

struct Fiber {
    ucontext_t ctx;
    void *sp;  // the saved stack pointer (fast switch)
    State state;
    dim3 tid;
    uint64_t shfl_value, shfl_got;
    int shfl_src;
};

static const size_t STACK = 256 * 1024;
static std::vector<Fiber> g_fibers;
static std::vector<char *> g_stacks;
static ucontext_t g_scheduler;
static void *g_scheduler_sp;
static int g_cur = -1;
static dim3 g_block, g_grid, g_bdim, g_outside(0, 0, 0);
static const std::function<void()> *g_body;

const dim3 &thread_idx() {
    if (g_cur < 0) {
        fprintf(stderr, "cuda emulator: threadIdx used outside a kernel\n");
        abort();
    }
    return g_fibers[g_cur].tid;
}
const dim3 &block_idx() { return g_block; }
const dim3 &block_dim() { return g_bdim; }
const dim3 &grid_dim() { return g_grid; }

static void yield_to_scheduler() {
#ifdef EMU_FAST_SWITCH
    emu_switch(&g_fibers[g_cur].sp, g_scheduler_sp);
#else
    swapcontext(&g_fibers[g_cur].ctx, &g_scheduler);
#endif
}

static void resume(int t) {
    g_cur = t;
#ifdef EMU_FAST_SWITCH
    emu_switch(&g_scheduler_sp, g_fibers[t].sp);
#else
    swapcontext(&g_scheduler, &g_fibers[t].ctx);
#endif
}

void syncthreads() {
    g_fibers[g_cur].state = AT_BARRIER;
    yield_to_scheduler();
}

void warp_exchange(uint64_t mine, int src_lane, uint64_t *got) {
    Fiber &f = g_fibers[g_cur];
    f.shfl_value = mine, f.shfl_src = src_lane, f.state = AT_SHUFFLE;
    yield_to_scheduler();
    *got = g_fibers[g_cur].shfl_got;
}

static void trampoline() {
    (*g_body)();
    g_fibers[g_cur].state = DONE;
#ifdef EMU_FAST_SWITCH
    emu_switch(&g_fibers[g_cur].sp, g_scheduler_sp);  // never resumed
    abort();
#endif
    // ucontext: uc_link returns to the scheduler
}

[[noreturn]] static void deadlock(const char *why) {
    fprintf(stderr, "cuda emulator: block (%u,%u,%u): %s\n", g_block.x, g_block.y, g_block.z, why);
    abort();
}

// Runs every thread of the current block to completion, releasing barriers and shuffles as they fill up.
static void run_block(int n) {
    for (int t = 0; t < n; t++) {
        Fiber &f = g_fibers[t];
#ifdef EMU_FAST_SWITCH
        // a fresh stack as emu_switch leaves one: six saved registers, then the address `ret` goes to (16-byte
        // aligned, as after a call), then a null return address for trampoline itself
        uintptr_t top = ((uintptr_t)g_stacks[t] + STACK) & ~(uintptr_t)15;
        void **slot = (void **)(top - 16);
        slot[0] = (void *)trampoline, slot[1] = NULL;
        void **regs = slot - 6;
        for (int i = 0; i < 6; i++) regs[i] = NULL;
        f.sp = regs;
#else
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = g_stacks[t], f.ctx.uc_stack.ss_size = STACK, f.ctx.uc_link = &g_scheduler;
        makecontext(&f.ctx, trampoline, 0);
#endif
        f.state = RUNNABLE;
        f.tid = dim3((unsigned)t % g_bdim.x, (unsigned)t / g_bdim.x % g_bdim.y, (unsigned)t / (g_bdim.x * g_bdim.y));
    }
    for (;;) {
        int ran = 0;
        for (int t = 0; t < n; t++)
            if (g_fibers[t].state == RUNNABLE) {
                resume(t);
                ran = 1;
            }
        g_cur = -1;
        if (ran) continue;
        int done = 0, at_barrier = 0, released = 0;
        for (int t = 0; t < n; t++) done += g_fibers[t].state == DONE, at_barrier += g_fibers[t].state == AT_BARRIER;
        if (done == n) return;
        for (int w = 0; w < (n + 31) / 32; w++) {  // a warp whose live lanes all wait at a shuffle exchanges
            int lo = 32 * w, hi = lo + 32 < n ? lo + 32 : n, waiting = 0, live = 0;
            for (int t = lo; t < hi; t++) live += g_fibers[t].state != DONE, waiting += g_fibers[t].state == AT_SHUFFLE;
            if (!waiting) continue;
            if (waiting != live) continue;  // some lanes are elsewhere: they may still come
            for (int t = lo; t < hi; t++) {
                Fiber &f = g_fibers[t];
                if (f.state != AT_SHUFFLE) continue;
                int src = lo + f.shfl_src;
                f.shfl_got = src < hi && g_fibers[src].state == AT_SHUFFLE ? g_fibers[src].shfl_value : 0;
            }
            for (int t = lo; t < hi; t++)
                if (g_fibers[t].state == AT_SHUFFLE) g_fibers[t].state = RUNNABLE;
            released = 1;
        }
        if (released) continue;
        if (at_barrier + done == n) {  // every live thread at the barrier (exited threads count as arrived)
            for (int t = 0; t < n; t++)
                if (g_fibers[t].state == AT_BARRIER) g_fibers[t].state = RUNNABLE;
            continue;
        }
        deadlock("threads wait at a shuffle and at __syncthreads at once (divergent barrier or partial warp)");
    }
}

// the shared memory a block may opt in to (cudaDeviceGetAttribute, and the launch's limit)
size_t smem_optin(void) {
    const char *s = getenv("LLAMADUO_EMU_SMEM_OPTIN");
    return s && *s ? (size_t)strtoull(s, NULL, 10) : 227 * 1024;
}

static cudaError_t g_last = cudaSuccess;
static std::vector<char> g_smem;
static std::vector<std::pair<const void *, int>> g_smem_allowed;

// (aligned to 128 bytes, as a GPU's: tensor-core loads and stores need 32)
void *dynamic_smem() { return (void *)(((uintptr_t)g_smem.data() + 127) & ~(uintptr_t)127); }

void set_max_dynamic_smem(const void *kernel, int bytes) {
    for (auto &a : g_smem_allowed)
        if (a.first == kernel) {
            a.second = bytes;
            return;
        }
    g_smem_allowed.push_back({kernel, bytes});
}

// Fault injection for tests (emu_inject_faults): the Nth launch fails, or every cudaMalloc from the Nth on; what is
// launched after an injected failure is counted (an engine that stops at its first error launches nothing more).
static long g_launches, g_mallocs, g_fail_launch, g_fail_malloc, g_after_fault;
static int g_faulted;

void launch_impl(dim3 grid, dim3 block, size_t smem, const void *kernel, const char *name, const std::function<void()> &body) {
    g_launches++;
    if (g_faulted) g_after_fault++;
    if (g_fail_launch && g_launches == g_fail_launch) {
        g_faulted = 1;
        g_last = cudaErrorLaunchFailure;
        return;
    }
    unsigned n = block.x * block.y * block.z;
    if (n == 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
        g_last = cudaErrorInvalidConfiguration;
        return;
    }
    size_t allowed = 48 * 1024;
    for (auto &a : g_smem_allowed)
        if (a.first == kernel) allowed = (size_t)a.second;
    if (smem > allowed || smem > smem_optin()) {  // a GPU refuses the launch
        g_last = cudaErrorInvalidValue;
        return;
    }
    g_smem.assign((smem ? smem : 1) + 128, (char)0xff);  // garbage, as on a GPU (0xff.. floats are NaN)
    while (g_stacks.size() < n) g_stacks.push_back((char *)malloc(STACK));
    if (g_fibers.size() < n) g_fibers.resize(n);
    g_body = &body, g_grid = grid, g_bdim = block;
    count_kernel_begin();
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                g_block = dim3(x, y, z);
                run_block((int)n);
            }
    count_kernel_end(name);
    g_body = NULL;
}

}  // namespace emu

// ---- runtime -------------------------------------------------------------------------------------------------
static cudaError_t set_last(cudaError_t e) {
    if (e != cudaSuccess) emu::g_last = e;
    return e;
}

extern "C" void emu_inject_faults(long fail_launch, long fail_malloc) {
    emu::g_launches = emu::g_mallocs = emu::g_after_fault = 0;
    emu::g_fail_launch = fail_launch, emu::g_fail_malloc = fail_malloc, emu::g_faulted = 0;
}
extern "C" long emu_launches(void) { return emu::g_launches; }
extern "C" long emu_mallocs(void) { return emu::g_mallocs; }
extern "C" long emu_launches_after_fault(void) { return emu::g_after_fault; }

cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (++emu::g_mallocs >= emu::g_fail_malloc && emu::g_fail_malloc) {  // out of memory from then on
        emu::g_faulted = 1;
        *p = NULL;
        return set_last(cudaErrorMemoryAllocation);
    }
    *p = emu::count_on() ? emu::count_alloc(bytes) : malloc(bytes ? bytes : 1);
    if (*p) memset(*p, 0xff, bytes);  // garbage, as on a GPU (0xff.. floats are NaN): a read before a write shows
    return set_last(*p ? cudaSuccess : cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void *p) {
    if (emu::count_owns(p)) emu::count_free(p);
    else free(p);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    (void)kind;  // the counter tells device memory by its address, as cudaMemcpyDefault does
    if (emu::count_on()) {
        int from = emu::count_owns(src), to = emu::count_owns(dst);
        emu::count_add(from && to ? "memcpy D2D" : to ? "upload" : from ? "download" : "memcpy H2H", from ? (double)bytes : 0,
                       to ? (double)bytes : 0);
    }
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    emu::count_add("memset", 0, (double)bytes);
    memset(p, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu::g_last;
    emu::g_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return emu::g_last; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "unknown error";
    }
}
// Several devices only in name: each is the same host memory, so ranks on "their own GPU" run as they would.
static int emu_devices(void) {
    const char *s = getenv("LLAMADUO_EMU_DEVICES");
    int n = s ? atoi(s) : 1;
    return n < 1 ? 1 : n;
}
static thread_local int g_device;
cudaError_t cudaStreamQuery(cudaStream_t s) {
    (void)s;
    return cudaSuccess;
}
static char g_stream_or_event;  // what every stream and event handle points at
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    *s = &g_stream_or_event;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) { return (void)s, cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) { return (void)s, cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    (void)flags;
    *e = &g_stream_or_event;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) { return (void)e, cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) { return (void)e, (void)s, cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) { return (void)s, (void)e, (void)flags, cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *n) {
    *n = emu_devices();
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= emu_devices()) return set_last(cudaErrorInvalidValue);
    g_device = device;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
    *device = g_device;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (device < 0 || device >= emu_devices()) return set_last(cudaErrorInvalidValue);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA emulator on the CPU (device %d)", device);
    p->major = 9, p->minor = 0, p->multiProcessorCount = 1, p->totalGlobalMem = (size_t)16 << 30;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    if (device < 0 || device >= emu_devices() || attr != cudaDevAttrMaxSharedMemoryPerBlockOptin) return set_last(cudaErrorInvalidValue);
    *value = (int)emu::smem_optin();
    return cudaSuccess;
}

// ---- BLAS: column-major D = alpha·op(A)·op(B) + beta·C on OpenBLAS's sgemm (fp32 accumulation, as cuBLAS's
// fp32 compute type); bf16 operands are widened to fp32 first, which is exact --------------------------------------
struct emu_blas {
    int unused;
};
struct emu_lt_desc {
    cublasOperation_t ta, tb;
};
struct emu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct emu_lt_pref {
    int unused;
};

// A stored column-major matrix of `cols` columns with leading dimension ld, as fp32 (NULL: it already is).
static float *widen(const void *X, cudaDataType_t type, int64_t ld, int64_t cols) {
    if (type != CUDA_R_16BF) return NULL;
    size_t n = (size_t)ld * (size_t)cols;
    float *f = (float *)malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) f[i] = __bfloat162float(((const __nv_bfloat16 *)X)[i]);
    return f;
}

// The traffic counter's bytes for one product: A and B read once, C read when beta != 0, D written (fp32).
static void count_gemm(const char *name, int m, int n, int k, cudaDataType_t at, cudaDataType_t bt, float beta) {
    double ea = at == CUDA_R_16BF ? 2 : 4, eb = bt == CUDA_R_16BF ? 2 : 4, mn = (double)m * n;
    emu::count_add(name, (double)m * k * ea + (double)k * n * eb + (beta != 0 ? 4 * mn : 0), 4 * mn);
}

static void gemm_cm(int ta, int tb, int m, int n, int k, float alpha, const void *A, cudaDataType_t at, int64_t lda, const void *B,
                    cudaDataType_t bt, int64_t ldb, float beta, const float *C, float *D, int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (D != C)
        for (int j = 0; j < n; j++) memcpy(D + (size_t)j * ldc, C + (size_t)j * ldc, sizeof(float) * (size_t)m);
    float *a32 = widen(A, at, lda, ta ? m : k), *b32 = widen(B, bt, ldb, tb ? k : n);
    cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a32 ? a32 : (const float *)A,
                (int)lda, b32 ? b32 : (const float *)B, (int)ldb, beta, D, (int)ldc);
    free(a32), free(b32);
}

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new emu_blas();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    (void)h, (void)mode;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_ERROR"; }
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *alpha, const float *A,
                           int lda, const float *B, int ldb, const float *beta, float *C, int ldc) {
    if (!h || m < 0 || n < 0 || k < 0 || lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
    count_gemm("cublasSgemm", m, n, k, CUDA_R_32F, CUDA_R_32F, *beta);
    gemm_cm(ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, *beta, C, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *alpha, const void *A,
                            cudaDataType_t at, int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct,
                            int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    (void)algo;
    if (!h || ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F || at != bt) return CUBLAS_STATUS_NOT_SUPPORTED;
    count_gemm("cublasGemmEx", m, n, k, at, bt, *(const float *)beta);
    gemm_cm(ta, tb, m, n, k, *(const float *)alpha, A, at, lda, B, bt, ldb, *(const float *)beta, (const float *)C, (float *)C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
// EMU_LT_NO_ALGO=1 makes the heuristic find nothing, to exercise callers' fallbacks
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new emu_blas();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new emu_lt_desc{CUBLAS_OP_N, CUBLAS_OP_N};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *v, size_t n) {
    if (n != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    (a == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = *(const cublasOperation_t *)v;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld) {
    if (ld < (int64_t)rows) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new emu_lt_pref();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a, const void *v,
                                                    size_t n) {
    (void)p, (void)a, (void)v, (void)n;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p, int want,
                                              cublasLtMatmulHeuristicResult_t *res, int *found) {
    (void)h, (void)d, (void)a, (void)b, (void)c, (void)dl, (void)p;
    if (want < 1) return CUBLAS_STATUS_INVALID_VALUE;
    memset(res, 0, sizeof *res);
    const char *none = getenv("EMU_LT_NO_ALGO");
    *found = none && *none == '1' ? 0 : 1;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A, cublasLtMatrixLayout_t la,
                              const void *B, cublasLtMatrixLayout_t lb, const void *beta, const void *C, cublasLtMatrixLayout_t lc, void *D,
                              cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes, cudaStream_t stream) {
    (void)h, (void)algo, (void)ws, (void)ws_bytes, (void)stream;
    // op(A) is [m, k], op(B) is [k, n], C and D are [m, n]: the layouts must agree
    uint64_t m = d->ta ? la->cols : la->rows, k = d->ta ? la->rows : la->cols, kb = d->tb ? lb->cols : lb->rows, n = d->tb ? lb->rows : lb->cols;
    if (k != kb || lc->rows != m || lc->cols != n || ld->rows != m || ld->cols != n || lc->type != CUDA_R_32F || ld->type != CUDA_R_32F ||
        la->type != lb->type)
        return CUBLAS_STATUS_INVALID_VALUE;
    count_gemm("cublasLtMatmul", (int)m, (int)n, (int)k, la->type, lb->type, *(const float *)beta);
    gemm_cm(d->ta, d->tb, (int)m, (int)n, (int)k, *(const float *)alpha, A, la->type, la->ld, B, lb->type, lb->ld, *(const float *)beta,
            (const float *)C, (float *)D, lc->ld);
    return CUBLAS_STATUS_SUCCESS;
}
