#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

SamplerParams sampler_defaults(void) {
    return (SamplerParams){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f,
                           .repeat_last_n = 64, .seed = 0};
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

static double uniform01(uint64_t *rng) { return (splitmix64(rng) >> 11) * (1.0 / 9007199254740992.0); }

typedef struct {
    float logit;
    int id;
} Cand;

static int cmp_cand_desc(const void *a, const void *b) {
    float x = ((const Cand *)a)->logit, y = ((const Cand *)b)->logit;
    if (x != y) return x > y ? -1 : 1;
    return ((const Cand *)a)->id - ((const Cand *)b)->id;
}

int sampler_sample(const SamplerParams *p, uint64_t *rng, float *logits, int V, const int *history, int n_hist) {
    if (p->repeat_penalty != 1.0f && n_hist > 0) {
        int from = p->repeat_last_n > 0 && n_hist > p->repeat_last_n ? n_hist - p->repeat_last_n : 0;
        for (int i = from; i < n_hist; i++) {
            int t = history[i];
            if (t < 0 || t >= V) continue;
            // a token seen twice is penalised once: mark it by checking earlier occurrences
            int seen = 0;
            for (int j = from; j < i && !seen; j++) seen = history[j] == t;
            if (seen) continue;
            logits[t] = logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
        }
    }
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (p->temperature <= 0.0f) return best;
    // Candidates: tokens within ln(1e-9) of the best after temperature — the rest carry negligible mass and
    // sorting all of a 256k vocabulary per token would dominate decoding.
    float inv_t = 1.0f / p->temperature, floor_ = logits[best] - 20.7f * p->temperature;
    Cand *c = ld_xmalloc(sizeof(Cand) * (size_t)V);
    int n = 0;
    for (int i = 0; i < V; i++)
        if (logits[i] >= floor_) c[n++] = (Cand){logits[i] * inv_t, i};
    qsort(c, (size_t)n, sizeof(Cand), cmp_cand_desc);
    if (p->top_k > 0 && n > p->top_k) n = p->top_k;
    double sum = 0;
    float mx = c[0].logit;
    double *pr = ld_xmalloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) sum += (pr[i] = exp((double)(c[i].logit - mx)));
    for (int i = 0; i < n; i++) pr[i] /= sum;
    int keep = n;
    if (p->min_p > 0.0f)
        for (int i = 1; i < keep; i++)
            if (pr[i] < p->min_p * pr[0]) {
                keep = i;
                break;
            }
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < keep; i++) {
            cum += pr[i];
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    double total = 0;
    for (int i = 0; i < keep; i++) total += pr[i];
    double r = uniform01(rng) * total, acc = 0;
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
