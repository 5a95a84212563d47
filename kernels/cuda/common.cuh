// defines: what the CUDA kernel files share — error capture with the kernel's name, launch checks.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>

#include "activation.h"  // these two before the C block below: they bring their own C++-safe includes
#include "dtype.h"

extern "C" {
#include "kernels_cuda.h"
}

void kc_set_error(const char *what, cudaError_t e);
void kc_set_error_msg(const char *what, const char *reason);  // library failures (cuBLAS statuses)
// Collectives running on stream s beside the default stream (busy 1), or none any more (0): memory.cu gives its
// cache back (cudaFree, which waits for every stream without a deadline) only once they are done, polled up to
// timeout_s.
void kc_side_stream(cudaStream_t s, double timeout_s, int busy);

// Whether a block may have `bytes` of shared memory on this device, opted in to (A100 163 KB, H100 227 KB, the sm_86
// and sm_89 cards 99 KB).
static inline int kc_smem_fits(size_t bytes) {
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        (void)cudaGetLastError();  // (not a launch's error)
        return 0;
    }
    return bytes <= (size_t)optin;
}

// The error for a kernel whose block needs more shared memory than the card allows (what: the kernel's name).
static inline int kc_smem_refused(const char *what, size_t bytes, int hd) {
    char reason[160];
    snprintf(reason, sizeof reason, "head_dim %d needs %zu KB of shared memory a block, more than this card allows", hd, (bytes + 1023) / 1024);
    kc_set_error_msg(what, reason);
    return -1;
}

// After a launch: the launch itself and (for asynchronous faults) nothing else is waited for.
#define KC_CHECK_LAUNCH(name)                                     \
    do {                                                          \
        cudaError_t e_ = cudaGetLastError();                      \
        if (e_ != cudaSuccess) return kc_set_error(name, e_), -1; \
    } while (0)

// The same inside a function that must release what it holds: records the error and jumps to its cleanup label.
#define KC_CHECK_LAUNCH_GOTO(name, label)    \
    do {                                     \
        cudaError_t e_ = cudaGetLastError(); \
        if (e_ != cudaSuccess) {             \
            kc_set_error(name, e_);          \
            goto label;                      \
        }                                    \
    } while (0)

// An op's output element: v at y[i], and rounded to bf16 at y16[i] where y16 is set (kernels.h: the producer of a
// bf16 GEMM's input rounds it).
__device__ static inline void kc_store(float *y, uint16_t *y16, size_t i, float v) {
    y[i] = v;
    if (y16) ((__nv_bfloat16 *)y16)[i] = __float2bfloat16_rn(v);
}

static inline unsigned kc_blocks(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }
