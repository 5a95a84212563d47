// Mean cross-entropy with ignore-index and its gradient (kernels/cpu/activations.c k_cross_entropy): one block
// per row computes the row's log-sum-exp and writes d logits in the same pass.
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

// row_loss[t] = lse − x[target] (0 for ignored rows); dlogits = (softmax − onehot) / n_counted
__global__ static void ce_kernel(float *dlogits, float *row_loss, const float *logits, const int *targets, int V, int ignore,
                                 float inv_n) {
    size_t t = blockIdx.x;
    const float *x = logits + t * V;
    int target = targets[t];
    if (target == ignore) {
        if (dlogits)
            for (int v = threadIdx.x; v < V; v += blockDim.x) dlogits[t * V + v] = 0.0f;
        if (threadIdx.x == 0) row_loss[t] = 0.0f;
        return;
    }
    float m = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, x[v]);
    m = block_reduce(m, 1);
    float s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(x[v] - m);
    float lse = m + logf(block_reduce(s, 0));
    if (dlogits)
        for (int v = threadIdx.x; v < V; v += blockDim.x) dlogits[t * V + v] = expf(x[v] - lse) * inv_n - (v == target ? inv_n : 0.0f);
    if (threadIdx.x == 0) row_loss[t] = lse - x[target];
}

extern "C" int kc_cross_entropy(float *dlogits, const float *logits, const int *targets, int T, int V, int ignore_index, float *loss,
                                int *n_counted) {
    int *ht = (int *)malloc(sizeof(int) * (size_t)(T > 0 ? T : 1));
    float *hl = (float *)malloc(sizeof(float) * (size_t)(T > 0 ? T : 1));
    float *row_loss = (float *)kc_alloc(sizeof(float) * (size_t)(T > 0 ? T : 1));
    int rc = -1, n = 0;
    if (!row_loss || kc_download(ht, targets, sizeof(int) * (size_t)T)) goto done;
    for (int t = 0; t < T; t++) n += ht[t] != ignore_index;
    if (T > 0) {
        ce_kernel<<<T, 256>>>(dlogits, row_loss, logits, targets, V, ignore_index, n ? 1.0f / n : 0.0f);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) {
            kc_set_error("cross_entropy", e);
            goto done;
        }
        if (kc_download(hl, row_loss, sizeof(float) * (size_t)T)) goto done;
    }
    {
        double sum = 0;
        for (int t = 0; t < T; t++) sum += hl[t];
        *loss = n ? (float)(sum / n) : 0.0f;
    }
    if (n_counted) *n_counted = n;
    rc = 0;
done:
    kc_free(row_loss);
    free(ht), free(hl);
    return rc;
}
