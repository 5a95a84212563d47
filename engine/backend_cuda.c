// The CUDA backend: backend.h's ops on device memory, launched through kernels_cuda.h (built with LLAMADUO_HAVE_CUDA).
#ifdef LLAMADUO_HAVE_CUDA
#include "backend.h"
#include "kernels_cuda.h"

static void *cuda_alloc(size_t bytes) {
    void *p = kc_alloc(bytes ? bytes : 1);
    if (p && kc_fill(p, 0, (bytes + sizeof(float) - 1) / sizeof(float))) {
        kc_free(p);
        return NULL;
    }
    return p;
}
// the tiled kernel where the ranges are rows of k/v (a packed batch, keeping lse for the backward, or a prefill over
// the cache), the per-token one where they count from each token's kv_base (decoding)
static int cuda_attention(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_base, const int *kv_lo,
                          const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    if (!kv_base) return kc_attention_packed(out, out16, lse, q, kv, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
    return kc_attention(out, out16, q, kv, kv_base, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
}

#define CUDA_OP(op) .op = kc_##op,
const Backend ld_backend_cuda = {
    .name = "cuda",
    .weight_grads = 1,
    .rounds_gemm_inputs = 1,
    .last_error = kc_last_error,
    .alloc = cuda_alloc,
    .alloc_scratch = kc_alloc,
    .release = kc_free,
    .upload = kc_upload,
    .download = kc_download,
    .copy = kc_copy,
    .fill = kc_fill,
    .to_bf16 = kc_to_bf16_runs,
    .from_bf16 = kc_from_bf16_runs,
    LD_BACKEND_OPS(CUDA_OP).attention = cuda_attention,
    .linear_cross_entropy = kc_linear_cross_entropy,
};
#endif
