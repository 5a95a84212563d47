// defines: a CPU emulator of the small part of CUDA that kernels/cuda/ uses, so the kernels' own code — their
// indexing, tiling, barriers and warp shuffles — runs and is checked on machines without a GPU (ctest label
// emu). tests/cuda_emu/cu2cpp.py rewrites each kernel launch `k<<<grid, block>>>(args)` into emu::launch; every
// thread of a block is a fiber (ucontext) that runs until __syncthreads or a warp shuffle, where it waits for its
// block or warp; blocks run one after another. Memory is host memory; cuBLAS / cuBLASLt are plain loops with
// double accumulation. What it cannot show: races (threads interleave only at barriers), timing, and how the real
// cuBLAS rounds. What it can count: each kernel's launches and the device bytes it touches (emu_count.h).
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>

// ---- launch geometry -----------------------------------------------------------------------------------------
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef dim3 uint3;

namespace emu {
const dim3 &thread_idx();
const dim3 &block_idx();
const dim3 &block_dim();
const dim3 &grid_dim();
void syncthreads();
void warp_exchange(uint64_t mine, int src_lane, uint64_t *got);  // a shuffle: every live lane of the warp meets here
// name: the kernel's (the traffic counter's rows, emu_count.h)
void launch_impl(dim3 grid, dim3 block, size_t smem, const void *kernel, const char *name, const std::function<void()> &body);
template <typename F>
void launch(dim3 grid, dim3 block, const char *name, F body) {
    launch_impl(grid, block, 0, NULL, name, std::function<void()>(body));
}
// a launch with dynamic shared memory: over 48 KiB only after cudaFuncSetAttribute allowed it, as on a GPU
template <typename F>
void launch_smem(dim3 grid, dim3 block, size_t smem, const void *kernel, const char *name, F body) {
    launch_impl(grid, block, smem, kernel, name, std::function<void()>(body));
}
void *dynamic_smem();  // the running block's `extern __shared__` array
void set_max_dynamic_smem(const void *kernel, int bytes);
}  // namespace emu

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::block_idx())
#define blockDim (emu::block_dim())
#define gridDim (emu::grid_dim())
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static  // one instance, shared by the fibers of the running block
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

inline void __syncthreads(void) { emu::syncthreads(); }
// the warp's lanes meet (a shuffle whose value no one reads)
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    uint64_t got;
    emu::warp_exchange(0, (int)(emu::thread_idx().x & 31), &got);
}

template <typename T>
inline T emu_shfl(T v, int src_lane) {
    static_assert(sizeof(T) <= 8, "shuffles of up to 8 bytes");
    uint64_t mine = 0, got = 0;
    memcpy(&mine, &v, sizeof(T));
    emu::warp_exchange(mine, src_lane, &got);
    T r;
    memcpy(&r, &got, sizeof(T));
    return r;
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    (void)mask;
    return emu_shfl(v, (int)(threadIdx.x & 31) ^ lane_mask);
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src) {
    (void)mask;
    return emu_shfl(v, src & 31);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    (void)mask;
    int lane = (int)(threadIdx.x & 31), src = lane + (int)delta;
    return emu_shfl(v, src < 32 ? src : lane);
}

// Fibers switch only at barriers and shuffles, so a read-modify-write is atomic here.
inline float atomicAdd(float *p, float v) {
    float old = *p;
    *p = old + v;
    return old;
}
inline int atomicAdd(int *p, int v) {
    int old = *p;
    *p = old + v;
    return old;
}
inline unsigned atomicAdd(unsigned *p, unsigned v) {
    unsigned old = *p;
    *p = old + v;
    return old;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __expf(float x) { return expf(x); }

// ---- bf16 --------------------------------------------------------------------------------------------------
struct __nv_bfloat16 {
    uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {  // round to nearest even; NaN stays NaN
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7fffffff) > 0x7f800000) r.bits = (uint16_t)((u >> 16) | 64);
    else r.bits = (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    return r;
}
inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = (uint32_t)h.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ---- runtime -----------------------------------------------------------------------------------------------
typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNotReady = 600,
    cudaErrorLaunchFailure = 719,
    cudaErrorUnknown = 999
} cudaError_t;
typedef enum { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault } cudaMemcpyKind;
typedef struct {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t totalGlobalMem;
} cudaDeviceProp;
typedef void *cudaStream_t;

cudaError_t cudaMalloc(void **p, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T **p, size_t bytes) {
    return cudaMalloc((void **)p, bytes);
}
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamQuery(cudaStream_t s);  // cudaSuccess: work ends when its call returns
// Streams and events only in name: every call's work is done when it returns, so any order they ask for holds.
typedef void *cudaEvent_t;
enum { cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2 };
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDeviceCount(int *n);  // LLAMADUO_EMU_DEVICES (default 1) emulated devices
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device);
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef enum { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 } cudaDeviceAttr;
// the shared memory a block may opt in to: 227 KiB (an H100's), or LLAMADUO_EMU_SMEM_OPTIN bytes (a smaller card's)
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
template <typename T>
inline cudaError_t cudaFuncSetAttribute(T *kernel, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) emu::set_max_dynamic_smem((const void *)kernel, value);
    return cudaSuccess;
}

// ---- cuBLAS / cuBLASLt (the calls kernels/cuda/lora_linear.cu makes) -------------------------------------------
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2 } cublasMath_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4 } cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1 } cublasLtMatmulPreferenceAttributes_t;
typedef struct emu_blas *cublasHandle_t;
typedef struct emu_blas *cublasLtHandle_t;
typedef struct emu_lt_desc *cublasLtMatmulDesc_t;
typedef struct emu_lt_layout *cublasLtMatrixLayout_t;
typedef struct emu_lt_pref *cublasLtMatmulPreference_t;
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *alpha, const float *A,
                           int lda, const float *B, int ldb, const float *beta, float *C, int ldc);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *alpha, const void *A,
                            cudaDataType_t at, int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct,
                            int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo);
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *v, size_t n);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a, const void *v,
                                                    size_t n);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p, int want,
                                              cublasLtMatmulHeuristicResult_t *res, int *found);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A, cublasLtMatrixLayout_t la,
                              const void *B, cublasLtMatrixLayout_t lb, const void *beta, const void *C, cublasLtMatrixLayout_t lc, void *D,
                              cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes, cudaStream_t stream);
