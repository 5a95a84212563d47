// Prefill and decode throughput of the engine on one model, at batch 1 and batch B, as one JSON line.
// Usage: bench_engine MODEL [--threads N] [--batch B] [--prompt-tokens P] [--decode-tokens D] [--reps R]
// The same workload as bench_llamacpp.py: prompts of P tokens, then D decode steps per sequence.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "util.h"

typedef struct {
    double prefill_tps, decode_tps;
} Result;

// B sequences: prefill P tokens each (one forward call per sequence, as a server admits them), then D decode
// steps with all B sequences in each forward call. Token ids are fixed pseudo-random (speed is value-blind).
static Result run(const Model *m, int B, int P, int D) {
    KVCache *kv = kv_new(&m->cfg, B, P + D);
    if (!kv) {
        fprintf(stderr, "%s\n", ld_last_error());
        exit(1);
    }
    int V = m->cfg.vocab, n = P > B ? P : B;
    int *tok = malloc(sizeof(int) * n), *slot = malloc(sizeof(int) * n), *pos = malloc(sizeof(int) * n);
    uint8_t *want = calloc((size_t)n, 1);
    float *logits = malloc(sizeof(float) * (size_t)B * V);
    double t0 = ld_time_s();
    for (int s = 0; s < B; s++) {
        for (int i = 0; i < P; i++)
            tok[i] = (int)((1103515245u * (unsigned)(i + 7 * s) + 12345u) % (unsigned)(V - 300)) + 100, slot[i] = s, pos[i] = i;
        memset(want, 0, (size_t)P);
        want[P - 1] = 1;
        model_forward(m, kv, tok, slot, pos, P, want, logits);
    }
    double t1 = ld_time_s();
    for (int d = 0; d < D; d++) {
        for (int s = 0; s < B; s++) tok[s] = 100 + (d * 31 + s) % 1000, slot[s] = s, pos[s] = P + d;
        model_forward(m, kv, tok, slot, pos, B, NULL, logits);
    }
    double t2 = ld_time_s();
    free(tok), free(slot), free(pos), free(want), free(logits);
    kv_free(kv);
    return (Result){(double)B * P / (t1 - t0), (double)B * D / (t2 - t1)};
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_engine MODEL [--threads N] [--batch B] [--prompt-tokens P] [--decode-tokens D]\n");
        return 2;
    }
    int threads = omp_get_max_threads(), B = 16, P = 128, D = 32;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt-tokens"))
            P = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode-tokens"))
            D = atoi(argv[i + 1]);
    }
    omp_set_num_threads(threads);
    Model *m = model_load(argv[1]);
    if (!m) {
        fprintf(stderr, "%s\n", ld_last_error());
        return 1;
    }
    run(m, 1, 16, 4);  // warm-up: page in the weights
    Result r1 = run(m, 1, P, D), rb = run(m, B, P, D);
    printf(
        "{\"engine\": \"llamaduo\", \"threads\": %d, \"batch\": %d, \"prompt_tokens\": %d, \"decode_tokens\": %d, "
        "\"prefill_tps_b1\": %.1f, \"decode_tps_b1\": %.2f, \"prefill_tps_bn\": %.1f, \"decode_tps_bn\": %.2f}\n",
        threads, B, P, D, r1.prefill_tps, r1.decode_tps, rb.prefill_tps, rb.decode_tps);
    model_free(m);
    return 0;
}
