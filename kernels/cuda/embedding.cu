// Token embeddings: rows gathered (times a scale: Gemma's sqrt(dim)) and, backward, the gradient rows added into
// the table's gradient (atomics: a token repeated in the batch adds several times).
#include <cuda_bf16.h>

#include "common.cuh"

template <typename Elem>
__device__ static float as_float(Elem v);
template <>
__device__ float as_float<float>(float v) {
    return v;
}
template <>
__device__ float as_float<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

template <typename Elem>
__global__ static void embed_fwd(float *x, const Elem *table, const int *tokens, int D, float scale, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t t = i / D;
    x[i] = as_float(table[(size_t)tokens[t] * D + i % D]) * scale;
}

// One thread per column, the tokens in order: a token seen twice adds in the same order on every run (atomics
// would not), so full fine-tuning on the GPU is deterministic, as its resume and ZeRO-1 promise.
__global__ static void embed_bwd(float *dtable, const float *dx, const int *tokens, int T, int D, float scale) {
    int d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= D) return;
    for (int t = 0; t < T; t++) dtable[(size_t)tokens[t] * D + d] += dx[(size_t)t * D + d] * scale;
}

extern "C" int kc_embedding(float *x, const void *table, LdDtype tt, const int *tokens, int T, int D, float scale) {
    size_t n = (size_t)T * D;
    if (tt != LD_F32 && tt != LD_BF16) {
        kc_set_error_msg("embedding", "the table must be F32 or BF16 on the GPU");
        return -1;
    }
    if (!n) return 0;
    if (tt == LD_F32)
        embed_fwd<<<kc_blocks(n, 256), 256>>>(x, (const float *)table, tokens, D, scale, n);
    else
        embed_fwd<<<kc_blocks(n, 256), 256>>>(x, (const __nv_bfloat16 *)table, tokens, D, scale, n);
    KC_CHECK_LAUNCH("embedding");
    return 0;
}

extern "C" int kc_embedding_backward(float *dtable, const float *dx, const int *tokens, int T, int D, float scale) {
    size_t n = (size_t)T * D;
    if (!n) return 0;
    embed_bwd<<<kc_blocks((size_t)D, 128), 128>>>(dtable, dx, tokens, T, D, scale);
    KC_CHECK_LAUNCH("embedding_backward");
    return 0;
}
