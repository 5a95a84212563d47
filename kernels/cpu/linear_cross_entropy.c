// The model's head and its loss in one op, a chunk of rows at a time: only [chunk_rows, V] logits ever exist
// (a 2,048-token step on a 256k vocabulary would otherwise hold two 2 GiB matrices), and rows whose target is
// ignored (prompt tokens in completion-only training) are never multiplied at all.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

float k_linear_cross_entropy(float *dx, float *dw, const float *x, const void *w, LdDtype wt, const int *targets, int T, int D, int V,
                             float softcap, int ignore_index, int chunk_rows, int n_norm, int *n_counted) {
    int n = 0;
    for (int t = 0; t < T; t++) n += targets[t] != ignore_index;
    if (n_counted) *n_counted = n;
    if (dx) memset(dx, 0, sizeof(float) * (size_t)T * D);
    if (n == 0) return 0.0f;
    int C = chunk_rows < 1 ? 1 : chunk_rows > n ? n : chunk_rows, grad = dx || dw;
    int *rows = malloc(sizeof(int) * (size_t)n);
    float *xc = malloc(sizeof(float) * (size_t)C * D), *logits = malloc(sizeof(float) * (size_t)C * V);
    float *dxc = dx ? malloc(sizeof(float) * (size_t)C * D) : NULL;
    for (int t = 0, i = 0; t < T; t++)
        if (targets[t] != ignore_index) rows[i++] = t;
    double loss = 0;
    int div = n_norm > 0 ? n_norm : n;
    float inv_n = 1.0f / (float)div;
    for (int c0 = 0; c0 < n; c0 += C) {
        int m = n - c0 < C ? n - c0 : C;
        for (int i = 0; i < m; i++) memcpy(xc + (size_t)i * D, x + (size_t)rows[c0 + i] * D, sizeof(float) * (size_t)D);
        k_matmul_q(logits, xc, w, wt, NULL, m, D, V);  // logits[m,V]
        if (softcap > 0) k_softcap(logits, (size_t)m * V, softcap);
        for (int i = 0; i < m; i++) {
            float *row = logits + (size_t)i * V;
            int target = targets[rows[c0 + i]];
            float lse = k_logsumexp(row, V);
            loss += lse - row[target];
            if (!grad) continue;
            // row becomes d loss / d (uncapped logits): (softmax − onehot)/n, through the cap's derivative
            for (int v = 0; v < V; v++) {
                float y = row[v], d = expf(y - lse) * inv_n - (v == target ? inv_n : 0.0f);
                if (softcap > 0) d *= 1.0f - (y / softcap) * (y / softcap);
                row[v] = d;
            }
        }
        if (dx) {
            memset(dxc, 0, sizeof(float) * (size_t)m * D);
            k_matmul_q_backward_x(dxc, logits, w, wt, m, D, V);
            for (int i = 0; i < m; i++) memcpy(dx + (size_t)rows[c0 + i] * D, dxc + (size_t)i * D, sizeof(float) * (size_t)D);
        }
        if (dw) k_matmul_backward(NULL, dw, NULL, logits, xc, NULL, m, D, V);
    }
    free(rows), free(xc), free(logits), free(dxc);
    return (float)(loss / div);
}
