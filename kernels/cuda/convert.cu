// fp32 <-> bf16 for buffers kept between the forward and the backward pass (dtype.h ld_f32_to_bf16 /
// ld_bf16_to_f32 are the contract: round to nearest even, NaN kept). A launch converts up to KC_CONVERT_RUNS
// buffers, one per grid row (blockIdx.y), each walked with a grid stride.
#include <cuda_bf16.h>

#include "common.cuh"
#include "convert.h"

typedef struct {
    LdConvertRun run[KC_CONVERT_RUNS];
} Runs;

__global__ static void to_bf16_kernel(Runs r) {
    const LdConvertRun *run = &r.run[blockIdx.y];
    __nv_bfloat16 *dst = (__nv_bfloat16 *)run->dst;
    const float *src = (const float *)run->src;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < run->n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ static void from_bf16_kernel(Runs r) {
    const LdConvertRun *run = &r.run[blockIdx.y];
    float *dst = (float *)run->dst;
    const __nv_bfloat16 *src = (const __nv_bfloat16 *)run->src;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < run->n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

// Grid columns for the longest of a launch's runs, at most 65535 (the stride covers the rest).
static unsigned columns(const Runs *r, int count) {
    size_t longest = 0;
    for (int i = 0; i < count; i++) longest = r->run[i].n > longest ? r->run[i].n : longest;
    unsigned x = kc_blocks(longest, 256);
    return x > 65535 ? 65535 : x;
}

static int convert(const LdConvertRun *runs, int count, int to) {
    for (int at = 0; at < count; at += KC_CONVERT_RUNS) {
        Runs r;
        int m = 0;
        for (int i = at; i < count && i < at + KC_CONVERT_RUNS; i++)
            if (runs[i].n) r.run[m++] = runs[i];
        if (!m) continue;
        dim3 grid(columns(&r, m), (unsigned)m);
        if (to) {
            to_bf16_kernel<<<grid, 256>>>(r);
            KC_CHECK_LAUNCH("to_bf16");
        } else {
            from_bf16_kernel<<<grid, 256>>>(r);
            KC_CHECK_LAUNCH("from_bf16");
        }
    }
    return 0;
}

extern "C" int kc_to_bf16_runs(const LdConvertRun *runs, int count) { return convert(runs, count, 1); }
extern "C" int kc_from_bf16_runs(const LdConvertRun *runs, int count) { return convert(runs, count, 0); }

extern "C" int kc_to_bf16(void *dst, const float *src, size_t n) {
    LdConvertRun run = {dst, src, n};
    return convert(&run, 1, 1);
}

extern "C" int kc_from_bf16(float *dst, const void *src, size_t n) {
    LdConvertRun run = {dst, src, n};
    return convert(&run, 1, 0);
}
