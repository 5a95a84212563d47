// Picking a token from one row of logits: greedy, or temperature with top-k, min-p and top-p filters. The
// engine's sampler (engine/sampler.c) draws u from a sequence's RNG and applies the penalties first;
// the CUDA version (kernels/cuda/sample.cu) repeats these steps in the same order and arithmetic.
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

typedef struct {
    float logit;
    int id;
} Cand;

static int cmp_cand_desc(const void *a, const void *b) {
    float x = ((const Cand *)a)->logit, y = ((const Cand *)b)->logit;
    if (x != y) return x > y ? -1 : 1;
    return ((const Cand *)a)->id - ((const Cand *)b)->id;
}

int k_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int k_sample_row(const float *logits, int V, float temperature, int top_k, float top_p, float min_p, double u) {
    int best = k_argmax(logits, V);
    if (temperature <= 0.0f) return best;
    // Candidates: tokens within ln(1e-9) of the best after temperature — the rest carry negligible mass and
    // sorting all of a 256k vocabulary per token would dominate decoding.
    float inv_t = 1.0f / temperature, floor_ = logits[best] - K_SAMPLE_FLOOR * temperature;
    Cand *c = malloc(sizeof(Cand) * (size_t)V);
    int n = 0;
    for (int i = 0; i < V; i++)
        if (logits[i] >= floor_) c[n++] = (Cand){logits[i] * inv_t, i};
    qsort(c, (size_t)n, sizeof(Cand), cmp_cand_desc);
    if (top_k > 0 && n > top_k) n = top_k;
    double sum = 0;
    float mx = c[0].logit;
    double *pr = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) sum += (pr[i] = exp((double)(c[i].logit - mx)));
    for (int i = 0; i < n; i++) pr[i] /= sum;
    int keep = n;
    if (min_p > 0.0f)
        for (int i = 1; i < keep; i++)
            if (pr[i] < min_p * pr[0]) {
                keep = i;
                break;
            }
    if (top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < keep; i++) {
            cum += pr[i];
            if (cum >= top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    double total = 0;
    for (int i = 0; i < keep; i++) total += pr[i];
    double r = u * total, acc = 0;
    int pick = c[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        acc += pr[i];
        if (r < acc) {
            pick = c[i].id;
            break;
        }
    }
    free(pr);
    free(c);
    return pick;
}

void k_penalize_counts(float *logits, const int *tokens, const int *counts, int n, float frequency, float presence) {
    for (int i = 0; i < n; i++) {
        // in double the product is exact (24-bit count × 24-bit float), so a fused multiply-add, which the
        // compiler may or may not emit here or in the CUDA version, rounds the same as separate operations
        logits[tokens[i]] -= (float)((double)counts[i] * frequency + presence);
    }
}
