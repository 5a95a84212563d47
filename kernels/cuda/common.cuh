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
