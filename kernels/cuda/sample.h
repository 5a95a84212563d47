// defines: token choice on the device for rows of logits (kernels.h k_sample_row, k_penalize_counts)
// (kernels/cuda/sample.cu; each returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>

// Token choice for n_rows rows of logits[n_rows, V] (modified in place by the penalties), row r by rows[r]: its
// repetition penalty over the distinct tokens penalized[n_penalized] (the host's sampler_penalized list), then
// the frequency and presence penalties over counted[n_counted] with counts[] (sampler_counted; kernels.h
// k_penalize_counts), then kernels.h k_sample_row with u (same order and arithmetic: the same logits and u give
// the same token). picked[n_rows] on the host; -1 where a sampled row had more than 4,096 candidates (its
// penalised row is left on the device for the host to decide with k_sample_row and the same u).
typedef struct {
    float temperature, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty;
    int top_k, n_penalized, n_counted;
    const int *penalized, *counted, *counts;  // host memory
    double u;
} KcSampleRow;
int kc_sample(int *picked, float *logits, int n_rows, int V, const KcSampleRow *rows);
