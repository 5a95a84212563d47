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
int gpu_model_sample(GpuModel *g, const KcSampleRow *rows, int n_rows, int *picked) { return (void)g, (void)rows, (void)n_rows, (void)picked, -1; }
int gpu_model_logits_row(GpuModel *g, int row, float *dst) { return (void)g, (void)row, (void)dst, -1; }

#else

#include "cuda_device.h"
#include "gpu_weights.h"
#include "kernels_cuda.h"
#include "lora.h"

struct GpuModel {
    const Model *m;
    GpuWeights *w;
    int n_slots, ctx;
    float *k_cache, *v_cache;  // [n_layers][n_slots][ctx][Hkv*hd]
    float *logits;             // [n_logits, V]: the last forward's wanted rows when kept on the device
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
    if (!(g->w = gpu_weights_upload(m, m->adapter, wt))) {
        free(g);
        return NULL;
    }
    size_t n = (size_t)c->n_layers * n_slots * ctx * c->n_kv_heads * c->head_dim;
    int err = 0;
    g->k_cache = gpu_zeros(n, &err), g->v_cache = gpu_zeros(n, &err);
    if (err) {
        ld_set_error("cannot allocate a GPU KV cache of %.1f GiB (%d sequences x %d positions): %s", 2.0 * n * sizeof(float) / (1 << 30),
                     n_slots, ctx, kc_last_error());
        gpu_model_free(g);
        return NULL;
    }
    return g;
}

void gpu_model_free(GpuModel *g) {
    if (!g) return;
    kc_free(g->k_cache), kc_free(g->v_cache), kc_free(g->logits);
    gpu_weights_free(g->w);
    free(g);
}

int gpu_model_forward(GpuModel *g, const int *tokens, const int *slot, const int *pos, int n, const uint8_t *want, float *logits) {
    const Model *m = g->m;
    const ModelConfig *c = &m->cfg;
    const GpuWeights *W = g->w;
    int D = c->dim, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads, F = c->ffn_dim, V = c->vocab;
    int qd = Hq * hd, kvd = Hkv * hd, r = W->lora_rank, err = 0;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V || slot[i] < 0 || slot[i] >= g->n_slots || pos[i] < 0 || pos[i] >= g->ctx) {
            ld_set_error("token %d (id %d, sequence %d, position %d) is outside the vocabulary or the context", i, tokens[i], slot[i], pos[i]);
            return -1;
        }
    // per-token cache rows (within one layer's [n_slots * ctx] block) and key ranges
    int *row = ld_xmalloc(sizeof(int) * (size_t)n), *base = ld_xmalloc(sizeof(int) * (size_t)n), *lo_g = ld_xcalloc((size_t)n, sizeof(int));
    int *lo_l = ld_xmalloc(sizeof(int) * (size_t)n), *out_rows = ld_xmalloc(sizeof(int) * (size_t)n), n_out = 0;
    for (int i = 0; i < n; i++) {
        base[i] = slot[i] * g->ctx, row[i] = base[i] + pos[i];
        lo_l[i] = c->sliding_window && pos[i] - c->sliding_window + 1 > 0 ? pos[i] - c->sliding_window + 1 : 0;
        if (!want || want[i]) out_rows[n_out++] = i;
    }
    int *ints[] = {(int *)tokens, (int *)pos, row, base, lo_g, lo_l, out_rows};
    int *d_int[7] = {0};
    for (int k = 0; k < 7 && !err; k++) {
        d_int[k] = kc_alloc(sizeof(int) * (size_t)(n ? n : 1));
        err = !d_int[k] || kc_upload(d_int[k], ints[k], sizeof(int) * (size_t)n);
    }
    int *d_tok = d_int[0], *d_pos = d_int[1], *d_row = d_int[2], *d_base = d_int[3], *d_lo_g = d_int[4], *d_lo_l = d_int[5], *d_out = d_int[6];
    float *x = gpu_zeros((size_t)n * D, &err), *xb = gpu_zeros((size_t)n * D, &err), *q = gpu_zeros((size_t)n * qd, &err);
    float *k = gpu_zeros((size_t)n * kvd, &err), *v = gpu_zeros((size_t)n * kvd, &err), *att = gpu_zeros((size_t)n * qd, &err);
    float *gt = gpu_zeros((size_t)n * F, &err), *u = gpu_zeros((size_t)n * F, &err), *ax = gpu_zeros((size_t)n * (r ? r : 1), &err);
    float *xo = gpu_zeros((size_t)(n_out ? n_out : 1) * D, &err);
    if (!err && n_out > g->cap_logits) {  // the kept rows' buffer grows to the widest batch seen
        kc_free(g->logits);
        g->cap_logits = 0;
        if (!(g->logits = kc_alloc(sizeof(float) * (size_t)n_out * V))) err = 1;
        else g->cap_logits = n_out;
    }
    float *lg = g->logits;
    g->n_logits = 0;
    int *d_hi = d_pos;  // a token sees its own sequence up to its position
#define OK(call) (err = err || (call) != 0)  // the first failure stops every later launch
#define LIN(y, xin, Wt, bias, l, t, in, out)                                                                                 \
    do {                                                                                                                   \
        float *A_ = W->lora_A ? W->lora_A[(l) * LT_COUNT + (t)] : NULL, *B_ = W->lora_B ? W->lora_B[(l) * LT_COUNT + (t)] : NULL; \
        OK(kc_lora_linear(y, ax, xin, Wt, W->wt, A_, B_, W->lora_scale, n, in, out, r));                                      \
        OK(kc_add_bias(y, bias, n, out));                                                                                  \
    } while (0)
    OK(kc_embedding(x, W->embed, W->wt, d_tok, n, D, c->embed_scale ? sqrtf((float)D) : 1.0f));
    for (int l = 0; l < c->n_layers && !err; l++) {
        const GpuLayer *w = &W->layers[l];
        int local = c->layer_local[l];
        const float *inv = local ? W->inv_local : W->inv_global;
        float *kc_l = g->k_cache + (size_t)l * g->n_slots * g->ctx * kvd, *vc_l = g->v_cache + (size_t)l * g->n_slots * g->ctx * kvd;
        if (l == 0) OK(kc_rmsnorm(xb, x, w->attn_norm, n, D, c->norm_eps, c->norm_plus_one));  // later layers: fused below
        LIN(q, xb, w->wq, w->bq, l, LT_Q, D, qd);
        LIN(k, xb, w->wk, w->bk, l, LT_K, D, kvd);
        LIN(v, xb, w->wv, w->bv, l, LT_V, D, kvd);
        if (c->qk_norm) {
            OK(kc_rmsnorm(q, q, w->q_norm, n * Hq, hd, c->norm_eps, c->norm_plus_one));
            OK(kc_rmsnorm(k, k, w->k_norm, n * Hkv, hd, c->norm_eps, c->norm_plus_one));
        }
        OK(kc_rope(q, d_pos, inv, n, Hq, hd)), OK(kc_rope(k, d_pos, inv, n, Hkv, hd));
        OK(kc_scatter_rows(kc_l, k, d_row, n, kvd)), OK(kc_scatter_rows(vc_l, v, d_row, n, kvd));
        OK(kc_attention(att, q, kc_l, vc_l, d_base, local ? d_lo_l : d_lo_g, d_hi, n, Hq, Hkv, hd, c->attn_scale, c->attn_softcap));
        LIN(xb, att, w->wo, w->bo, l, LT_O, qd, D);
        if (w->post_attn_norm) OK(kc_rmsnorm(xb, xb, w->post_attn_norm, n, D, c->norm_eps, c->norm_plus_one));
        OK(kc_add_rmsnorm(xb, x, xb, w->ffn_norm, n, D, c->norm_eps, c->norm_plus_one));  // x += attention; xb = ffn_norm(x)
        LIN(gt, xb, w->w_gate, NULL, l, LT_GATE, D, F);
        LIN(u, xb, w->w_up, NULL, l, LT_UP, D, F);
        OK(kc_gated(c->act, gt, gt, u, (size_t)n * F));
        LIN(xb, gt, w->w_down, NULL, l, LT_DOWN, F, D);
        if (w->post_ffn_norm) OK(kc_rmsnorm(xb, xb, w->post_ffn_norm, n, D, c->norm_eps, c->norm_plus_one));
        if (l + 1 < c->n_layers)  // x += ffn; xb = the next layer's attn_norm(x)
            OK(kc_add_rmsnorm(xb, x, xb, W->layers[l + 1].attn_norm, n, D, c->norm_eps, c->norm_plus_one));
        else
            OK(kc_add(x, xb, (size_t)n * D));
    }
#undef LIN
    if (n_out && !err) {
        OK(kc_gather_rows(xo, x, d_out, n_out, D));
        OK(kc_rmsnorm(xo, xo, W->final_norm, n_out, D, c->norm_eps, c->norm_plus_one));
        OK(kc_lora_linear(lg, NULL, xo, W->lm_head, W->wt, NULL, NULL, 0, n_out, D, V, 0));
        if (c->final_softcap > 0) OK(kc_softcap(lg, (size_t)n_out * V, c->final_softcap));
        if (logits) OK(kc_download(logits, lg, sizeof(float) * (size_t)n_out * V));
        if (!err) g->n_logits = n_out;
    }
#undef OK
    if (err) ld_set_error("GPU forward pass: %s", kc_last_error());
    float *bufs[] = {x, xb, q, k, v, att, gt, u, ax, xo};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) kc_free(bufs[i]);
    for (int i = 0; i < 7; i++) kc_free(d_int[i]);
    free(row), free(base), free(lo_g), free(lo_l), free(out_rows);
    return err ? -1 : 0;
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
