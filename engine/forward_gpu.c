#include "forward_gpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifndef LLAMADUO_HAVE_CUDA

GpuModel *gpu_model_new(const Model *m, int n_slots, int ctx, LdDtype wt) {
    (void)m, (void)n_slots, (void)ctx, (void)wt;
    ld_set_error("this build has no CUDA backend (nvcc was not found when it was configured)");
    return NULL;
}
void gpu_model_free(GpuModel *g) { (void)g; }
int gpu_model_forward(GpuModel *g, const int *t, const int *s, const int *p, int n, const uint8_t *w, float *l) {
    return (void)g, (void)t, (void)s, (void)p, (void)n, (void)w, (void)l, -1;
}
int gpu_model_sample(GpuModel *g, const KcSampleRow *rows, int n_rows, int *picked) {
    return (void)g, (void)rows, (void)n_rows, (void)picked, -1;
}
int gpu_model_logits_row(GpuModel *g, int row, float *dst) { return (void)g, (void)row, (void)dst, -1; }

#else

#include "cuda_device.h"
#include "gpu_weights.h"
#include "kernels_cuda.h"
#include "transformer.h"

struct GpuModel {
    const Model *m;
    GpuWeights *w;
    Lora *adapter;  // the model's adapter on the device, or NULL
    int n_slots, ctx;
    KvSpace kv;  // [n_layers][n_slots * ctx][Hkv*hd]
    float *logits;  // [n_logits, V]: the last forward's wanted rows when kept on the device
    int n_logits, cap_logits;  // rows held, rows allocated
};

GpuModel *gpu_model_new(const Model *m, int n_slots, int ctx, LdDtype wt) {
    if (ld_cuda_device_count() == 0) {
        ld_set_error("no CUDA device found");
        return NULL;
    }
    const ModelConfig *c = &m->cfg;
    GpuModel *g = ld_xcalloc(1, sizeof *g);
    g->m = m, g->n_slots = n_slots, g->ctx = ctx;
    if (!(g->w = gpu_weights_upload(m, wt)) || (m->adapter && !(g->adapter = gpu_lora_upload(m->adapter)))) {
        gpu_model_free(g);
        return NULL;
    }
    g->kv.rows = (size_t)n_slots * ctx;
    size_t n = (size_t)c->n_layers * g->kv.rows * c->n_kv_heads * c->head_dim;
    g->kv.k = ld_backend_cuda.alloc(sizeof(float) * n), g->kv.v = ld_backend_cuda.alloc(sizeof(float) * n);
    if (!g->kv.k || !g->kv.v) {
        ld_set_error("cannot allocate a GPU KV cache of %.1f GiB (%d sequences x %d positions): %s", 2.0 * n * sizeof(float) / (1 << 30),
                     n_slots, ctx, kc_last_error());
        gpu_model_free(g);
        return NULL;
    }
    return g;
}

void gpu_model_free(GpuModel *g) {
    if (!g) return;
    kc_free(g->kv.k), kc_free(g->kv.v), kc_free(g->logits);
    gpu_lora_free(g->adapter);
    gpu_weights_free(g->w);
    free(g);
}

// The kept rows' buffer grows to the widest batch seen.
static int reserve_logits(GpuModel *g, int n_out) {
    if (n_out <= g->cap_logits) return 0;
    kc_free(g->logits);
    g->cap_logits = 0;
    if (!(g->logits = kc_alloc(sizeof(float) * (size_t)n_out * g->m->cfg.vocab))) return -1;
    g->cap_logits = n_out;
    return 0;
}

int gpu_model_forward(GpuModel *g, const int *tokens, const int *slot, const int *pos, int n, const uint8_t *want, float *logits) {
    const ModelConfig *c = &g->m->cfg;
    const Backend *be = &ld_backend_cuda;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab || slot[i] < 0 || slot[i] >= g->n_slots || pos[i] < 0 || pos[i] >= g->ctx) {
            ld_set_error("token %d (id %d, sequence %d, position %d) is outside the vocabulary or the context", i, tokens[i], slot[i],
                         pos[i]);
            return -1;
        }
    int *out_rows = ld_xmalloc(sizeof(int) * (size_t)(n ? n : 1)), n_out = 0;
    for (int i = 0; i < n; i++)
        if (!want || want[i]) out_rows[n_out++] = i;
    Transformer t = {.be = be, .cfg = c, .w = g->w->w, .adapter = g->adapter};
    TokenPlan plan = {0};
    int *d_out = be->alloc(sizeof(int) * (size_t)(n_out ? n_out : 1));
    g->n_logits = 0;
    int rc = !d_out || be->upload(d_out, out_rows, sizeof(int) * (size_t)n_out) || reserve_logits(g, n_out) ||
             token_plan_cached(be, c, tokens, slot, pos, n, g->ctx, &plan) ||
             transformer_logits(&t, &plan, &g->kv, d_out, n_out, g->logits) ||
             (logits && n_out && kc_download(logits, g->logits, sizeof(float) * (size_t)n_out * c->vocab));
    if (!rc)
        g->n_logits = n_out;
    else
        ld_set_error("GPU forward pass: %s", kc_last_error());
    token_plan_free(be, &plan);
    kc_free(d_out), free(out_rows);
    return rc ? -1 : 0;
}

int gpu_model_sample(GpuModel *g, const KcSampleRow *rows, int n_rows, int *picked) {
    if (n_rows > g->n_logits) {
        ld_set_error("GPU sampling: %d rows asked, the last forward kept %d", n_rows, g->n_logits);
        return -1;
    }
    if (kc_sample(picked, g->logits, n_rows, g->m->cfg.vocab, rows)) {
        ld_set_error("GPU sampling: %s", kc_last_error());
        return -1;
    }
    return 0;
}

int gpu_model_logits_row(GpuModel *g, int row, float *dst) {
    size_t V = (size_t)g->m->cfg.vocab;
    if (row < 0 || row >= g->n_logits || kc_download(dst, g->logits + (size_t)row * V, sizeof(float) * V)) {
        ld_set_error("GPU logits row %d of %d: %s", row, g->n_logits, kc_last_error());
        return -1;
    }
    return 0;
}
#endif
