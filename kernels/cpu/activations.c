#include <math.h>
#include <string.h>

#include "../kernels.h"

void k_gated(Activation act, float *h, uint16_t *h16, const float *gate, const float *up, size_t n) {
#pragma omp parallel for if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        h[i] = ld_act(act, gate[i]) * up[i];
        if (h16) h16[i] = ld_f32_to_bf16(h[i]);
    }
}

void k_softcap(float *x, size_t n, float cap) {
    for (size_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

void k_add(float *x, uint16_t *x16, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        x[i] += y[i];
        if (x16) x16[i] = ld_f32_to_bf16(x[i]);
    }
}

float k_logsumexp(const float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)(x[i] - m));
    return m + (float)log(s);
}

void k_gated_backward(Activation act, float *dgate, float *dup, uint16_t *dgate16, uint16_t *dup16, const float *dh, const float *gate,
                      const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        dgate[i] = dh[i] * up[i] * ld_act_grad(act, g);
        dup[i] = dh[i] * ld_act(act, g);
        if (!dgate16) continue;
        dgate16[i] = ld_f32_to_bf16(dgate[i]);
        dup16[i] = ld_f32_to_bf16(dup[i]);
    }
}

void k_softcap_backward(float *dx, const float *dy, const float *y, size_t n, float cap) {
    for (size_t i = 0; i < n; i++) {
        float t = y[i] / cap;
        dx[i] = dy[i] * (1.0f - t * t);
    }
}

float k_cross_entropy(float *dlogits, const float *logits, const int *targets, int T, int V, int ignore_index, int *n_counted) {
    int n = 0;
    for (int t = 0; t < T; t++) n += targets[t] != ignore_index;
    double loss = 0;
    for (int t = 0; t < T; t++) {
        const float *row = logits + (size_t)t * V;
        float *d = dlogits ? dlogits + (size_t)t * V : NULL;
        if (targets[t] == ignore_index) {
            if (d) memset(d, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float lse = k_logsumexp(row, V);
        loss += lse - row[targets[t]];
        if (d) {
            for (int v = 0; v < V; v++) d[v] = expf(row[v] - lse) / n;
            d[targets[t]] -= 1.0f / n;
        }
    }
    if (n_counted) *n_counted = n;
    return n ? (float)(loss / n) : 0.0f;
}
