// fp32 <-> bf16 for buffers kept between the forward and the backward pass (dtype.h ld_f32_to_bf16 /
// ld_bf16_to_f32 are the contract: round to nearest even, NaN kept).
#include <cuda_bf16.h>

#include "common.cuh"

__global__ static void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ static void from_bf16_kernel(float *dst, const __nv_bfloat16 *src, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __bfloat162float(src[i]);
}

extern "C" int kc_to_bf16(void *dst, const float *src, size_t n) {
    if (!n) return 0;
    to_bf16_kernel<<<kc_blocks(n, 256), 256>>>((__nv_bfloat16 *)dst, src, n);
    KC_CHECK_LAUNCH("to_bf16");
    return 0;
}

extern "C" int kc_from_bf16(float *dst, const void *src, size_t n) {
    if (!n) return 0;
    from_bf16_kernel<<<kc_blocks(n, 256), 256>>>(dst, (const __nv_bfloat16 *)src, n);
    KC_CHECK_LAUNCH("from_bf16");
    return 0;
}
