// defines: token sampling — greedy, temperature, top-k, top-p, min-p, repetition penalty — seeded per
// sequence so results are reproducible.
#pragma once
#include <stdint.h>

typedef struct {
    float temperature;     // <= 0: greedy
    int top_k;             // 0: off
    float top_p;           // 1: off
    float min_p;           // 0: off
    float repeat_penalty;  // 1: off (divides positive logits, multiplies negative ones of seen tokens)
    int repeat_last_n;     // how far back the penalty looks (0: whole history)
    uint64_t seed;
} SamplerParams;

SamplerParams sampler_defaults(void);
uint64_t sampler_seed_state(uint64_t seed, uint64_t stream);  // independent RNG streams per sequence
// Picks a token from logits[V] (modified in place). history: the sequence's tokens so far. The steps, for
// callers that run the choice elsewhere (the GPU): sampler_penalize, then (temperature > 0 only) u =
// sampler_uniform(rng), then kernels.h k_sample_row.
int sampler_sample(const SamplerParams *p, uint64_t *rng, float *logits, int V, const int *history, int n_hist);
// The repetition penalty on the tokens of history's last repeat_last_n (each distinct token once): applied, or
// listed into out[n_hist] (returns how many; 0 when the penalty is off).
void sampler_penalize(const SamplerParams *p, float *logits, int V, const int *history, int n_hist);
int sampler_penalized(const SamplerParams *p, const int *history, int n_hist, int V, int *out);
double sampler_uniform(uint64_t *rng);  // the next draw in [0, 1)
