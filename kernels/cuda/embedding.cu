// Token embeddings: rows gathered (times a scale: Gemma's sqrt(dim)) and, backward, the gradient rows added into
// the table's gradient (atomics: a token repeated in the batch adds several times).
#include "common.cuh"

__global__ static void embed_fwd(float *x, const float *table, const int *tokens, int D, float scale, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t t = i / D;
    x[i] = table[(size_t)tokens[t] * D + i % D] * scale;
}

__global__ static void embed_bwd(float *dtable, const float *dx, const int *tokens, int D, float scale, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t t = i / D;
    atomicAdd(&dtable[(size_t)tokens[t] * D + i % D], dx[i] * scale);
}

extern "C" int kc_embedding(float *x, const float *table, const int *tokens, int T, int D, float scale) {
    size_t n = (size_t)T * D;
    if (!n) return 0;
    embed_fwd<<<kc_blocks(n, 256), 256>>>(x, table, tokens, D, scale, n);
    KC_CHECK_LAUNCH("embedding");
    return 0;
}

extern "C" int kc_embedding_backward(float *dtable, const float *dx, const int *tokens, int T, int D, float scale) {
    size_t n = (size_t)T * D;
    if (!n) return 0;
    embed_bwd<<<kc_blocks(n, 256), 256>>>(dtable, dx, tokens, D, scale, n);
    KC_CHECK_LAUNCH("embedding_backward");
    return 0;
}
