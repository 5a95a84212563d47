#include "sampler.h"

#include <stdlib.h>

#include "kernels.h"
#include "util.h"

SamplerParams sampler_defaults(void) {
    return (SamplerParams){.temperature = 0.0f,
                           .top_k = 0,
                           .top_p = 1.0f,
                           .min_p = 0.0f,
                           .repeat_penalty = 1.0f,
                           .repeat_last_n = 64,
                           .frequency_penalty = 0.0f,
                           .presence_penalty = 0.0f,
                           .seed = 0};
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t sampler_seed_state(uint64_t seed, uint64_t stream) {
    uint64_t s = seed ^ (stream * 0xd1342543de82ef95ull);
    return splitmix64(&s);
}

double sampler_uniform(uint64_t *rng) { return (splitmix64(rng) >> 11) * (1.0 / 9007199254740992.0); }

int sampler_penalized(const SamplerParams *p, const int *history, int n_hist, int V, int *out) {
    if (p->repeat_penalty == 1.0f || n_hist <= 0) return 0;
    int from = p->repeat_last_n > 0 && n_hist > p->repeat_last_n ? n_hist - p->repeat_last_n : 0, n = 0;
    for (int i = from; i < n_hist; i++) {
        int t = history[i];
        if (t < 0 || t >= V) continue;
        // a token seen twice is penalised once: mark it by checking earlier occurrences
        int seen = 0;
        for (int j = from; j < i && !seen; j++) seen = history[j] == t;
        if (!seen) out[n++] = t;
    }
    return n;
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

int sampler_counted(const SamplerParams *p, const int *generated, int n_gen, int V, int *tokens, int *counts) {
    if ((p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f) || n_gen <= 0) return 0;
    int m = 0;
    for (int i = 0; i < n_gen; i++)
        if (generated[i] >= 0 && generated[i] < V) tokens[m++] = generated[i];
    qsort(tokens, (size_t)m, sizeof(int), cmp_int);  // sorted: equal tokens adjacent, counted in one pass
    int n = 0;
    for (int i = 0; i < m; i++) {
        if (n && tokens[n - 1] == tokens[i]) {
            counts[n - 1]++;
        } else {
            tokens[n] = tokens[i], counts[n] = 1;
            n++;
        }
    }
    return n;
}

void sampler_penalize(const SamplerParams *p, float *logits, int V, const int *history, int n_hist, int n_gen) {
    if (n_hist <= 0) return;
    int *toks = ld_xmalloc(sizeof(int) * 2 * (size_t)n_hist), *counts = toks + n_hist;
    int n = sampler_penalized(p, history, n_hist, V, toks);
    for (int i = 0; i < n; i++)
        logits[toks[i]] = logits[toks[i]] > 0 ? logits[toks[i]] / p->repeat_penalty : logits[toks[i]] * p->repeat_penalty;
    if (n_gen > n_hist) n_gen = n_hist;
    n = sampler_counted(p, history + n_hist - n_gen, n_gen, V, toks, counts);
    k_penalize_counts(logits, toks, counts, n, p->frequency_penalty, p->presence_penalty);
    free(toks);
}

int sampler_sample(const SamplerParams *p, uint64_t *rng, float *logits, int V, const int *history, int n_hist, int n_gen) {
    sampler_penalize(p, logits, V, history, n_hist, n_gen);
    if (p->temperature <= 0.0f) return k_argmax(logits, V);
    return k_sample_row(logits, V, p->temperature, p->top_k, p->top_p, p->min_p, sampler_uniform(rng));
}
