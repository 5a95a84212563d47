#include "forward.h"

#include <stdlib.h>

#include "transformer.h"
#include "util.h"

KVCache *kv_new(const ModelConfig *c, int n_slots, int ctx) {
    KVCache *kv = ld_xcalloc(1, sizeof *kv);
    kv->n_layers = c->n_layers;
    kv->n_slots = n_slots;
    kv->ctx = ctx;
    kv->kv_dim = c->n_kv_heads * c->head_dim;
    size_t n = (size_t)c->n_layers * n_slots * ctx * kv->kv_dim;
    kv->k = malloc(n * sizeof(float));
    kv->v = malloc(n * sizeof(float));
    if (!kv->k || !kv->v) {
        ld_set_error("cannot allocate a KV cache of %.1f GiB (%d sequences x %d positions)", 2.0 * n * sizeof(float) / (1 << 30), n_slots,
                     ctx);
        kv_free(kv);
        return NULL;
    }
    return kv;
}

void kv_free(KVCache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

int model_forward(const Model *m, KVCache *kv, const int *tokens, const int *slot, const int *pos, int n, const uint8_t *want,
                  float *logits) {
    const ModelConfig *c = &m->cfg;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->vocab) {
            ld_set_error("token id %d is outside the vocabulary (%d)", tokens[i], c->vocab);
            return -1;
        }
        if (slot[i] < 0 || slot[i] >= kv->n_slots || pos[i] < 0 || pos[i] >= kv->ctx) {
            ld_set_error("position %d of sequence %d is outside the context (%d)", pos[i], slot[i], kv->ctx);
            return -1;
        }
    }
    const Backend *be = &ld_backend_cpu;
    Transformer t = {.be = be, .cfg = c, .w = model_weights(m), .adapter = m->adapter};
    KvSpace space = {{kv->k, kv->v, LD_F32, NULL, 0}, (size_t)kv->n_slots * kv->ctx};
    int *out_rows = ld_xmalloc(sizeof(int) * (size_t)(n ? n : 1)), n_out = 0;
    for (int i = 0; i < n; i++)
        if (!want || want[i]) out_rows[n_out++] = i;
    TokenPlan plan;
    int rc = token_plan_cached(be, c, tokens, slot, pos, n, kv->ctx, &plan);
    if (!rc) rc = transformer_logits(&t, &plan, &space, out_rows, n_out, logits);
    token_plan_free(be, &plan);
    free(out_rows);
    return rc;
}
