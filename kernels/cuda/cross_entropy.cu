// The head fused with the mean cross-entropy (kernels/cpu/linear_cross_entropy.c is the contract), a chunk of
// counted rows at a time: one block per row computes the row's log-sum-exp and writes its gradient in the same pass;
// dx and (full fine-tuning) the head's dw come from that gradient chunk by chunk.
#include <math.h>
#include <stdlib.h>

#include "common.cuh"

__device__ static float block_reduce(float v, int is_max) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nw ? part[lane] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    return v;
}

// One chunk's rows of logits (in place): soft-cap, row_loss = lse − y[target], and (grad) the gradient with
// respect to the uncapped logits, (softmax − onehot)/n through the cap's derivative: over the logits where keep, and
// rounded into d16 where set (the bf16 GEMM of dx reads it; with no dW to make, nothing reads the fp32 gradient).
__global__ static void head_ce_kernel(float *logits, uint16_t *d16, int keep, float *row_loss, const int *targets, int V, float cap,
                                      float inv_n, int grad) {
    float *y = logits + (size_t)blockIdx.x * V;
    int target = targets[blockIdx.x];
    float m = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        if (cap > 0) y[v] = tanhf(y[v] / cap) * cap;
        m = fmaxf(m, y[v]);
    }
    m = block_reduce(m, 1);  // its barrier also publishes the capped row to the whole block
    float s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(y[v] - m);
    float lse = m + logf(block_reduce(s, 0));
    if (threadIdx.x == 0) row_loss[blockIdx.x] = lse - y[target];
    __syncthreads();  // y[target] is read before anyone overwrites it with its gradient
    if (!grad) return;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float yv = y[v], d = expf(yv - lse) * inv_n - (v == target ? inv_n : 0.0f);
        if (cap > 0) d *= 1.0f - (yv / cap) * (yv / cap);
        if (keep) y[v] = d;
        if (d16) ((__nv_bfloat16 *)d16)[(size_t)blockIdx.x * V + v] = __float2bfloat16_rn(d);
    }
}

extern "C" int kc_linear_cross_entropy(float *dx, float *dw, const float *x, const void *W, LdDtype wt, const int *targets, int T, int D,
                                       int V, float softcap, int ignore_index, int chunk_rows, int n_norm, float *loss, int *n_counted) {
    int n = 0;
    for (int t = 0; t < T; t++) n += targets[t] != ignore_index;
    if (n_counted) *n_counted = n;
    *loss = 0.0f;
    if (dx && kc_fill(dx, 0.0f, (size_t)T * D)) return -1;
    if (n == 0) return 0;
    int div = n_norm > 0 ? n_norm : n;
    int C = chunk_rows < 1 ? 1 : chunk_rows > n ? n : chunk_rows, rc = -1, grad = dx || dw;
    int *rows = (int *)malloc(sizeof(int) * n), *tgt = (int *)malloc(sizeof(int) * n);
    float *hl = (float *)malloc(sizeof(float) * n);
    for (int t = 0, i = 0; t < T; t++)
        if (targets[t] != ignore_index) rows[i] = t, tgt[i++] = targets[t];
    int *d_rows = (int *)kc_alloc(sizeof(int) * n), *d_tgt = (int *)kc_alloc(sizeof(int) * n);
    float *row_loss = (float *)kc_alloc(sizeof(float) * n), *xc = (float *)kc_alloc(sizeof(float) * (size_t)C * D);
    float *logits = (float *)kc_alloc(sizeof(float) * (size_t)C * V), *dxc = dx ? (float *)kc_alloc(sizeof(float) * (size_t)C * D) : NULL;
    // a bf16 head: the chunk's rows and (for dx) its gradient rounded by the kernels that make them
    int bf16 = wt == LD_BF16;
    uint16_t *xc16 = bf16 ? (uint16_t *)kc_alloc(sizeof(uint16_t) * (size_t)C * D) : NULL;
    uint16_t *dl16 = bf16 && dx ? (uint16_t *)kc_alloc(sizeof(uint16_t) * (size_t)C * V) : NULL;
    if (!d_rows || !d_tgt || !row_loss || !xc || !logits || (dx && !dxc) || (bf16 && !xc16) || (bf16 && dx && !dl16) ||
        kc_upload(d_rows, rows, sizeof(int) * n) || kc_upload(d_tgt, tgt, sizeof(int) * n))
        goto done;
    for (int c0 = 0; c0 < n; c0 += C) {
        int m = n - c0 < C ? n - c0 : C;
        if (kc_gather_rows(xc, xc16, x, d_rows + c0, m, D) ||
            kc_lora_linear(logits, NULL, xc, xc16, W, wt, NULL, NULL, NULL, 0, m, D, V, 0))
            goto done;
        head_ce_kernel<<<m, 256>>>(logits, dl16, !dl16 || dw, row_loss + c0, d_tgt + c0, V, softcap, 1.0f / div, grad);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) {
            kc_set_error("linear_cross_entropy", e);
            goto done;
        }
        // dxc = dlogits·W (then scattered to the chunk's rows), dw[V,D] += dlogitsᵀ·xc (accumulated over the chunks)
        if (grad && (kc_lora_linear_backward(dx ? dxc : NULL, 0, dw, NULL, NULL, NULL, NULL, logits, dl16, xc, NULL, W, wt, NULL, NULL, 0,
                                             m, D, V, 0) ||
                     (dx && kc_scatter_rows(dx, dxc, d_rows + c0, m, D))))
            goto done;
    }
    if (kc_download(hl, row_loss, sizeof(float) * n)) goto done;
    {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += hl[i];
        *loss = (float)(sum / div);
    }
    rc = 0;
done:
    kc_free(d_rows), kc_free(d_tgt), kc_free(row_loss), kc_free(xc), kc_free(logits), kc_free(dxc), kc_free(xc16), kc_free(dl16);
    free(rows), free(tgt), free(hl);
    return rc;
}
