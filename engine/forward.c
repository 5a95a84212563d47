#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "lora.h"
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
        ld_set_error("cannot allocate a KV cache of %.1f GiB (%d sequences x %d positions)",
                     2.0 * n * sizeof(float) / (1 << 30), n_slots, ctx);
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

static float *kv_row(const KVCache *kv, float *base, int layer, int slot, int pos) {
    return base + (((size_t)layer * kv->n_slots + slot) * kv->ctx + pos) * kv->kv_dim;
}

int model_forward(const Model *m, KVCache *kv, const int *tokens, const int *slot, const int *pos, int n,
                  const uint8_t *want, float *logits) {
    const ModelConfig *c = &m->cfg;
    int D = c->dim, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads, F = c->ffn_dim, V = c->vocab;
    int qd = Hq * hd, kvd = Hkv * hd;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= V) {
            ld_set_error("token id %d is outside the vocabulary (%d)", tokens[i], V);
            return -1;
        }
        if (slot[i] < 0 || slot[i] >= kv->n_slots || pos[i] < 0 || pos[i] >= kv->ctx) {
            ld_set_error("position %d of sequence %d is outside the context (%d)", pos[i], slot[i], kv->ctx);
            return -1;
        }
    }
    float *x = ld_xmalloc(sizeof(float) * (size_t)n * D);     // [n, D] residual stream
    float *xb = ld_xmalloc(sizeof(float) * (size_t)n * D);    // [n, D] normed / branch output
    float *q = ld_xmalloc(sizeof(float) * (size_t)n * qd);    // [n, Hq*hd]
    float *k = ld_xmalloc(sizeof(float) * (size_t)n * kvd);   // [n, Hkv*hd]
    float *v = ld_xmalloc(sizeof(float) * (size_t)n * kvd);   // [n, Hkv*hd]
    float *att = ld_xmalloc(sizeof(float) * (size_t)n * qd);  // [n, Hq*hd]
    float *g = ld_xmalloc(sizeof(float) * (size_t)n * F);     // [n, F]
    float *u = ld_xmalloc(sizeof(float) * (size_t)n * F);     // [n, F]
    const float **k_rows = ld_xmalloc(sizeof(float *) * (size_t)n);
    const float **v_rows = ld_xmalloc(sizeof(float *) * (size_t)n);
    int *lo = ld_xmalloc(sizeof(int) * (size_t)n), *hi = ld_xmalloc(sizeof(int) * (size_t)n);

    float emb_scale = c->embed_scale ? sqrtf((float)D) : 1.0f;
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * D;
        ld_dequantize_row(m->embed.type, (const uint8_t *)m->embed.data + (size_t)tokens[i] * m->embed.row_bytes, xi, D);
        for (int j = 0; j < D; j++) xi[j] *= emb_scale;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->layers[l];
        int local = c->layer_local[l];
        k_rmsnorm(xb, x, w->attn_norm, n, D, c->norm_eps, c->norm_plus_one);
        k_matmul_q(q, xb, w->wq.data, w->wq.type, w->bq, n, D, qd);
        k_matmul_q(k, xb, w->wk.data, w->wk.type, w->bk, n, D, kvd);
        k_matmul_q(v, xb, w->wv.data, w->wv.type, w->bv, n, D, kvd);
        if (m->adapter) {
            lora_apply(m->adapter, l, LT_Q, q, xb, n);
            lora_apply(m->adapter, l, LT_K, k, xb, n);
            lora_apply(m->adapter, l, LT_V, v, xb, n);
        }
        if (c->qk_norm) {
            k_rmsnorm(q, q, w->q_norm, n * Hq, hd, c->norm_eps, c->norm_plus_one);
            k_rmsnorm(k, k, w->k_norm, n * Hkv, hd, c->norm_eps, c->norm_plus_one);
        }
        const float *inv_freq = local ? m->inv_freq_local : m->inv_freq_global;
        k_rope(q, pos, inv_freq, n, Hq, hd);
        k_rope(k, pos, inv_freq, n, Hkv, hd);
        for (int i = 0; i < n; i++) {
            memcpy(kv_row(kv, kv->k, l, slot[i], pos[i]), k + (size_t)i * kvd, sizeof(float) * kvd);
            memcpy(kv_row(kv, kv->v, l, slot[i], pos[i]), v + (size_t)i * kvd, sizeof(float) * kvd);
            k_rows[i] = kv_row(kv, kv->k, l, slot[i], 0);
            v_rows[i] = kv_row(kv, kv->v, l, slot[i], 0);
            hi[i] = pos[i];
            lo[i] = (local && pos[i] - c->sliding_window + 1 > 0) ? pos[i] - c->sliding_window + 1 : 0;
        }
        k_attention(att, q, k_rows, v_rows, lo, hi, n, Hq, Hkv, hd, c->attn_scale, c->attn_softcap);
        k_matmul_q(xb, att, w->wo.data, w->wo.type, w->bo, n, qd, D);
        if (m->adapter) lora_apply(m->adapter, l, LT_O, xb, att, n);
        if (w->post_attn_norm) k_rmsnorm(xb, xb, w->post_attn_norm, n, D, c->norm_eps, c->norm_plus_one);
        k_add(x, xb, (size_t)n * D);

        k_rmsnorm(xb, x, w->ffn_norm, n, D, c->norm_eps, c->norm_plus_one);
        k_matmul_q(g, xb, w->w_gate.data, w->w_gate.type, NULL, n, D, F);
        k_matmul_q(u, xb, w->w_up.data, w->w_up.type, NULL, n, D, F);
        if (m->adapter) {
            lora_apply(m->adapter, l, LT_GATE, g, xb, n);
            lora_apply(m->adapter, l, LT_UP, u, xb, n);
        }
        k_gated(c->act, g, g, u, (size_t)n * F);
        k_matmul_q(xb, g, w->w_down.data, w->w_down.type, NULL, n, F, D);
        if (m->adapter) lora_apply(m->adapter, l, LT_DOWN, xb, g, n);
        if (w->post_ffn_norm) k_rmsnorm(xb, xb, w->post_ffn_norm, n, D, c->norm_eps, c->norm_plus_one);
        k_add(x, xb, (size_t)n * D);
    }
    int n_out = 0;
    for (int i = 0; i < n; i++)
        if (!want || want[i]) memcpy(xb + (size_t)n_out++ * D, x + (size_t)i * D, sizeof(float) * D);
    if (n_out) {
        k_rmsnorm(xb, xb, m->final_norm, n_out, D, c->norm_eps, c->norm_plus_one);
        k_matmul_q(logits, xb, m->lm_head.data, m->lm_head.type, NULL, n_out, D, V);
        if (c->final_softcap > 0) k_softcap(logits, (size_t)n_out * V, c->final_softcap);
    }
    free(x); free(xb); free(q); free(k); free(v); free(att); free(g); free(u);
    free(k_rows); free(v_rows); free(lo); free(hi);
    return 0;
}
