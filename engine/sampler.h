// defines: token sampling — greedy, temperature, top-k, top-p, min-p, repetition, frequency and presence
// penalties — seeded per sequence so results are reproducible.
#pragma once
#include <stdint.h>

typedef struct {
    float temperature;  // <= 0: greedy
    int top_k;  // 0: off
    float top_p;  // 1: off
    float min_p;  // 0: off
    float repeat_penalty;  // 1: off (divides positive logits, multiplies negative ones of seen tokens)
    int repeat_last_n;  // how far back the penalty looks (0: whole history)
    // OpenAI's: logit[t] -= count[t]·frequency_penalty + (count[t] > 0)·presence_penalty, count[t] how often t
    // came among the tokens generated so far (not the prompt); 0: off. Applied after the repetition penalty.
    float frequency_penalty, presence_penalty;
    uint64_t seed;
} SamplerParams;

SamplerParams sampler_defaults(void);
uint64_t sampler_seed_state(uint64_t seed, uint64_t stream);  // independent RNG streams per sequence
// Picks a token from logits[V] (modified in place). history: the sequence's tokens so far, the last n_gen of
// them generated. The steps, for callers that run the choice elsewhere (the GPU): sampler_penalize, then
// (temperature > 0 only) u = sampler_uniform(rng), then kernels.h k_sample_row.
int sampler_sample(const SamplerParams *p, uint64_t *rng, float *logits, int V, const int *history, int n_hist, int n_gen);
// The penalties: applied to logits; or listed for another device — sampler_penalized: the repetition penalty's
// tokens (history's last repeat_last_n, each distinct token once) into out[n_hist], 0 when it is off;
// sampler_counted: the distinct generated tokens (ascending) and their counts into tokens[n_gen], counts[n_gen]
// for kernels.h k_penalize_counts, 0 when the frequency and presence penalties are off.
void sampler_penalize(const SamplerParams *p, float *logits, int V, const int *history, int n_hist, int n_gen);
int sampler_penalized(const SamplerParams *p, const int *history, int n_hist, int V, int *out);
int sampler_counted(const SamplerParams *p, const int *generated, int n_gen, int V, int *tokens, int *counts);
double sampler_uniform(uint64_t *rng);  // the next draw in [0, 1)
