#include "backprop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

// ---- a linear layer with its adapter --------------------------------------------------------------------

// LoRA dropout (on the adapter's input only, as PEFT applies it): element e of the input to (layer, target) is
// kept when a hash of (seed, layer, target, e) clears p, then scaled by 1/(1-p). The mask is a function, not
// state, so the backward pass recomputes it and runs stay reproducible.
typedef struct {
    float p;
    uint64_t seed;
    int layer, target;
} Drop;

static int drop_keep(const Drop *d, size_t e) {
    uint64_t h = d->seed ^ ((uint64_t)d->layer << 40) ^ ((uint64_t)d->target << 56) ^ (e * 0x9e3779b97f4a7c15ull);
    h ^= h >> 33, h *= 0xff51afd7ed558ccdull, h ^= h >> 33, h *= 0xc4ceb9fe1a85ec53ull, h ^= h >> 33;
    return (double)(h >> 11) * (1.0 / 9007199254740992.0) >= d->p;
}

// x with the dropout mask applied (a new buffer), or NULL when dropout is off.
static float *dropped_input(const Drop *d, const float *x, size_t n) {
    if (!d || d->p <= 0) return NULL;
    float *o = ld_xmalloc(sizeof(float) * n), k = 1.0f / (1.0f - d->p);
    for (size_t e = 0; e < n; e++) o[e] = drop_keep(d, e) ? x[e] * k : 0.0f;
    return o;
}

// y[T,out] = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ; ax[T,r] keeps x·Aᵀ for the backward pass.
static void lin_fwd(float *y, float *ax, const float *x, const Linear *w, const float *bias, const LoraPair *p,
                    const Drop *d, float s, int r, int T, int in, int out) {
    k_matmul_q(y, x, w->data, w->type, bias, T, in, out);
    if (!p || !p->A) return;
    float *xd = dropped_input(d, x, (size_t)T * in);
    k_matmul(ax, xd ? xd : x, p->A, NULL, T, in, r);
    free(xd);
    float *t = ld_xmalloc(sizeof(float) * (size_t)T * out);
    k_matmul(t, ax, p->B, NULL, T, r, out);
    for (size_t i = 0; i < (size_t)T * out; i++) y[i] += s * t[i];
    free(t);
}

// dx[T,in] += dy·W (+ the adapter's share); adapter gradients accumulate into g, the weight's and bias's
// (full fine-tuning) into dw[out,in] and db[out] when given.
static void lin_bwd(float *dx, const float *dy, const float *x, const float *ax, const Linear *w, const LoraPair *p,
                    LoraPair *g, Linear *dw, float *db, const Drop *d, float s, int r, int T, int in, int out) {
    k_matmul_q_backward_x(dx, dy, w->data, w->type, T, in, out);
    if (dw) k_matmul_backward(NULL, (float *)dw->data, db, dy, x, NULL, T, in, out);
    if (!p || !p->A) return;
    float *sdy = ld_xmalloc(sizeof(float) * (size_t)T * out), *dax = ld_xmalloc(sizeof(float) * (size_t)T * r);
    for (size_t i = 0; i < (size_t)T * out; i++) sdy[i] = s * dy[i];
    k_matmul_backward(dax, g ? g->B : NULL, NULL, sdy, ax, p->B, T, r, out);  // dax = s·dy·B; dB += s·dyᵀ·ax
    float *xd = dropped_input(d, x, (size_t)T * in);
    float *dxa = ld_xmalloc(sizeof(float) * (size_t)T * in);
    k_matmul_backward(dxa, g ? g->A : NULL, NULL, dax, xd ? xd : x, p->A, T, in, r);  // dx' = dax·A; dA += daxᵀ·x'
    if (xd) {  // through the dropout mask
        Drop keep = *d;
        float k = 1.0f / (1.0f - d->p);
        for (size_t e = 0; e < (size_t)T * in; e++) dxa[e] = drop_keep(&keep, e) ? dxa[e] * k : 0.0f;
    }
    for (size_t i = 0; i < (size_t)T * in; i++) dx[i] += dxa[i];
    free(sdy), free(dax), free(dxa), free(xd);
}

// ---- the model ------------------------------------------------------------------------------------------

static const LoraPair k_no_adapter[LT_COUNT];  // all A == NULL: plain linears

typedef struct {  // what one layer's forward keeps for its backward
    float *xin, *xn1, *q_pre, *k_pre, *q, *k, *v, *att, *o_pre, *xmid, *xn2, *g, *u, *h, *dn_pre;
    float *ax[LT_COUNT];
} LayerActs;

static float *buf(size_t n) { return ld_xcalloc(n, sizeof(float)); }

// Rows of logits per chunk of the fused head + loss: about 32 MiB of them whatever the vocabulary.
int head_chunk_rows(int vocab) {
    int rows = (int)((8u << 20) / (unsigned)(vocab > 0 ? vocab : 1));
    return rows < 16 ? 16 : rows;
}

static void free_acts(LayerActs *acts, int n_layers) {
    for (int l = 0; l < n_layers; l++) {
        LayerActs *a = &acts[l];
        float *all[] = {a->xin, a->xn1, a->q_pre, a->k_pre, a->q, a->k, a->v, a->att, a->o_pre, a->xmid, a->xn2, a->g, a->u, a->h, a->dn_pre};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
        for (int t = 0; t < LT_COUNT; t++) free(a->ax[t]);
    }
    free(acts);
}

static void add_to(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

float train_loss_and_grad(const Model *m, const Lora *lora, Lora *grad, Model *mg, const TrainBatch *b, int *n_counted) {
    const ModelConfig *c = &m->cfg;
    int T = b->T, D = c->dim, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads, F = c->ffn_dim, V = c->vocab;
    int qd = Hq * hd, kvd = Hkv * hd, r = lora ? lora->rank : 0;
    float s = lora ? lora->scale : 0;
    int training = grad || mg;
    Drop drops[LT_COUNT];
    int dropping = lora && grad && lora->dropout > 0;
#define DROP(t) (dropping ? (drops[t] = (Drop){lora->dropout, lora->dropout_seed, l, t}, &drops[t]) : NULL)
#define GP(t) (G ? &G[t] : NULL)
    for (int t = 0; t < T; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= V || (b->targets[t] != -100 && (b->targets[t] < 0 || b->targets[t] >= V))) {
            ld_set_error("token %d (%d -> %d) is outside the vocabulary (%d)", t, b->tokens[t], b->targets[t], V);
            return NAN;
        }
    // per-token key ranges: causal within the token's record, window on local layers
    int *rec_start = ld_xmalloc(sizeof(int) * (size_t)T), *lo_g = ld_xmalloc(sizeof(int) * (size_t)T),
        *lo_l = ld_xmalloc(sizeof(int) * (size_t)T), *hi = ld_xmalloc(sizeof(int) * (size_t)T);
    for (int i = 0, rcd = 0; i < T; i++) {
        while (rcd + 1 < b->n_records && i >= b->starts[rcd + 1]) rcd++;
        rec_start[i] = b->starts[rcd];
        hi[i] = i;
        lo_g[i] = rec_start[i];
        lo_l[i] = c->sliding_window && i - c->sliding_window + 1 > rec_start[i] ? i - c->sliding_window + 1 : rec_start[i];
    }
    float emb_scale = c->embed_scale ? sqrtf((float)D) : 1.0f;
    float *x = buf((size_t)T * D);
    for (int i = 0; i < T; i++) {
        ld_dequantize_row(m->embed.type, (const uint8_t *)m->embed.data + (size_t)b->tokens[i] * m->embed.row_bytes, x + (size_t)i * D, D);
        for (int j = 0; j < D; j++) x[(size_t)i * D + j] *= emb_scale;
    }
    LayerActs *acts = ld_xcalloc((size_t)c->n_layers, sizeof(LayerActs));
    const float **krows = ld_xmalloc(sizeof(float *) * (size_t)T), **vrows = ld_xmalloc(sizeof(float *) * (size_t)T);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->layers[l];
        LayerActs *a = &acts[l];
        const LoraPair *P = lora ? &lora->w[l * LT_COUNT] : k_no_adapter;
        int local = c->layer_local[l];
        const float *inv = local ? m->inv_freq_local : m->inv_freq_global;
        for (int t = 0; t < LT_COUNT; t++) a->ax[t] = r ? buf((size_t)T * r) : NULL;
        a->xin = buf((size_t)T * D), memcpy(a->xin, x, sizeof(float) * (size_t)T * D);
        a->xn1 = buf((size_t)T * D);
        k_rmsnorm(a->xn1, x, w->attn_norm, T, D, c->norm_eps, c->norm_plus_one);
        a->q = buf((size_t)T * qd), a->k = buf((size_t)T * kvd), a->v = buf((size_t)T * kvd);
        lin_fwd(a->q, a->ax[LT_Q], a->xn1, &w->wq, w->bq, &P[LT_Q], DROP(LT_Q), s, r, T, D, qd);
        lin_fwd(a->k, a->ax[LT_K], a->xn1, &w->wk, w->bk, &P[LT_K], DROP(LT_K), s, r, T, D, kvd);
        lin_fwd(a->v, a->ax[LT_V], a->xn1, &w->wv, w->bv, &P[LT_V], DROP(LT_V), s, r, T, D, kvd);
        if (c->qk_norm) {
            a->q_pre = buf((size_t)T * qd), a->k_pre = buf((size_t)T * kvd);
            memcpy(a->q_pre, a->q, sizeof(float) * (size_t)T * qd);
            memcpy(a->k_pre, a->k, sizeof(float) * (size_t)T * kvd);
            k_rmsnorm(a->q, a->q_pre, w->q_norm, T * Hq, hd, c->norm_eps, c->norm_plus_one);
            k_rmsnorm(a->k, a->k_pre, w->k_norm, T * Hkv, hd, c->norm_eps, c->norm_plus_one);
        }
        k_rope(a->q, b->positions, inv, T, Hq, hd);
        k_rope(a->k, b->positions, inv, T, Hkv, hd);
        for (int i = 0; i < T; i++) krows[i] = a->k, vrows[i] = a->v;
        a->att = buf((size_t)T * qd);
        k_attention(a->att, a->q, krows, vrows, local ? lo_l : lo_g, hi, T, Hq, Hkv, hd, c->attn_scale, c->attn_softcap);
        float *o = buf((size_t)T * D);
        lin_fwd(o, a->ax[LT_O], a->att, &w->wo, w->bo, &P[LT_O], DROP(LT_O), s, r, T, qd, D);
        if (w->post_attn_norm) {
            a->o_pre = o;
            o = buf((size_t)T * D);
            k_rmsnorm(o, a->o_pre, w->post_attn_norm, T, D, c->norm_eps, c->norm_plus_one);
        }
        add_to(x, o, (size_t)T * D);
        free(o);
        a->xmid = buf((size_t)T * D), memcpy(a->xmid, x, sizeof(float) * (size_t)T * D);
        a->xn2 = buf((size_t)T * D);
        k_rmsnorm(a->xn2, x, w->ffn_norm, T, D, c->norm_eps, c->norm_plus_one);
        a->g = buf((size_t)T * F), a->u = buf((size_t)T * F), a->h = buf((size_t)T * F);
        lin_fwd(a->g, a->ax[LT_GATE], a->xn2, &w->w_gate, NULL, &P[LT_GATE], DROP(LT_GATE), s, r, T, D, F);
        lin_fwd(a->u, a->ax[LT_UP], a->xn2, &w->w_up, NULL, &P[LT_UP], DROP(LT_UP), s, r, T, D, F);
        k_gated(c->act, a->h, a->g, a->u, (size_t)T * F);
        float *dn = buf((size_t)T * D);
        lin_fwd(dn, a->ax[LT_DOWN], a->h, &w->w_down, NULL, &P[LT_DOWN], DROP(LT_DOWN), s, r, T, F, D);
        if (w->post_ffn_norm) {
            a->dn_pre = dn;
            dn = buf((size_t)T * D);
            k_rmsnorm(dn, a->dn_pre, w->post_ffn_norm, T, D, c->norm_eps, c->norm_plus_one);
        }
        add_to(x, dn, (size_t)T * D);
        free(dn);
    }
    // head and loss, fused and chunked (never the whole [T, V] logits)
    float *xf = buf((size_t)T * D), *dxf = training ? buf((size_t)T * D) : NULL;
    k_rmsnorm(xf, x, m->final_norm, T, D, c->norm_eps, c->norm_plus_one);
    float loss = k_linear_cross_entropy(dxf, training && mg ? (float *)mg->lm_head.data : NULL /* tied: into embed */, xf, m->lm_head.data,
                                        m->lm_head.type, b->targets, T, D, V, c->final_softcap, -100, head_chunk_rows(V), n_counted);
    if (!training) {  // evaluation only
        free_acts(acts, c->n_layers);
        free(x), free(xf), free(krows), free(vrows), free(rec_start), free(lo_g), free(lo_l), free(hi);
        return loss;
    }
    float *dx = buf((size_t)T * D), *tmp = buf((size_t)T * D);
    k_rmsnorm_backward(dx, mg ? mg->final_norm : NULL, dxf, x, m->final_norm, T, D, c->norm_eps, c->norm_plus_one);
    free(xf), free(dxf);
    // layers in reverse; dx is always the gradient of the residual stream
    float *dF = buf((size_t)T * F), *dG = buf((size_t)T * F), *dU = buf((size_t)T * F);
    float *dq = buf((size_t)T * qd), *dk = buf((size_t)T * kvd), *dv = buf((size_t)T * kvd), *datt = buf((size_t)T * qd);
    float *dbranch = buf((size_t)T * D), *dn_in = buf((size_t)T * D);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const LayerWeights *w = &m->layers[l];
        LayerActs *a = &acts[l];
        const LoraPair *P = lora ? &lora->w[l * LT_COUNT] : k_no_adapter;
        LoraPair *G = grad ? &grad->w[l * LT_COUNT] : NULL;
        LayerWeights *W = mg ? &mg->layers[l] : NULL;  // gradients of the layer's weights (full fine-tuning)
        int local = c->layer_local[l];
        const float *inv = local ? m->inv_freq_local : m->inv_freq_global;
        // feed-forward block: x_out = xmid + post_ffn_norm(down(h))
        const float *ddn = dx;
        if (w->post_ffn_norm) {
            k_rmsnorm_backward(dbranch, W ? W->post_ffn_norm : NULL, dx, a->dn_pre, w->post_ffn_norm, T, D, c->norm_eps, c->norm_plus_one);
            ddn = dbranch;
        }
        memset(dF, 0, sizeof(float) * (size_t)T * F);
        lin_bwd(dF, ddn, a->h, a->ax[LT_DOWN], &w->w_down, &P[LT_DOWN], GP(LT_DOWN), W ? &W->w_down : NULL, NULL, DROP(LT_DOWN), s, r, T, F, D);
        k_gated_backward(c->act, dG, dU, dF, a->g, a->u, (size_t)T * F);
        memset(dn_in, 0, sizeof(float) * (size_t)T * D);
        lin_bwd(dn_in, dG, a->xn2, a->ax[LT_GATE], &w->w_gate, &P[LT_GATE], GP(LT_GATE), W ? &W->w_gate : NULL, NULL, DROP(LT_GATE), s, r, T, D, F);
        lin_bwd(dn_in, dU, a->xn2, a->ax[LT_UP], &w->w_up, &P[LT_UP], GP(LT_UP), W ? &W->w_up : NULL, NULL, DROP(LT_UP), s, r, T, D, F);
        k_rmsnorm_backward(tmp, W ? W->ffn_norm : NULL, dn_in, a->xmid, w->ffn_norm, T, D, c->norm_eps, c->norm_plus_one);
        add_to(dx, tmp, (size_t)T * D);
        // attention block: xmid = xin + post_attn_norm(o(att))
        const float *dob = dx;
        if (w->post_attn_norm) {
            k_rmsnorm_backward(dbranch, W ? W->post_attn_norm : NULL, dx, a->o_pre, w->post_attn_norm, T, D, c->norm_eps, c->norm_plus_one);
            dob = dbranch;
        }
        memset(datt, 0, sizeof(float) * (size_t)T * qd);
        lin_bwd(datt, dob, a->att, a->ax[LT_O], &w->wo, &P[LT_O], GP(LT_O), W ? &W->wo : NULL, W ? W->bo : NULL, DROP(LT_O), s, r, T, qd, D);
        memset(dk, 0, sizeof(float) * (size_t)T * kvd);
        memset(dv, 0, sizeof(float) * (size_t)T * kvd);
        k_attention_backward(dq, dk, dv, datt, a->q, a->k, a->v, local ? lo_l : lo_g, hi, T, Hq, Hkv, hd, c->attn_scale,
                             c->attn_softcap);
        k_rope_backward(dq, b->positions, inv, T, Hq, hd);
        k_rope_backward(dk, b->positions, inv, T, Hkv, hd);
        if (c->qk_norm) {
            float *t1 = buf((size_t)T * qd), *t2 = buf((size_t)T * kvd);
            k_rmsnorm_backward(t1, W ? W->q_norm : NULL, dq, a->q_pre, w->q_norm, T * Hq, hd, c->norm_eps, c->norm_plus_one);
            k_rmsnorm_backward(t2, W ? W->k_norm : NULL, dk, a->k_pre, w->k_norm, T * Hkv, hd, c->norm_eps, c->norm_plus_one);
            memcpy(dq, t1, sizeof(float) * (size_t)T * qd);
            memcpy(dk, t2, sizeof(float) * (size_t)T * kvd);
            free(t1), free(t2);
        }
        memset(dn_in, 0, sizeof(float) * (size_t)T * D);
        lin_bwd(dn_in, dq, a->xn1, a->ax[LT_Q], &w->wq, &P[LT_Q], GP(LT_Q), W ? &W->wq : NULL, W ? W->bq : NULL, DROP(LT_Q), s, r, T, D, qd);
        lin_bwd(dn_in, dk, a->xn1, a->ax[LT_K], &w->wk, &P[LT_K], GP(LT_K), W ? &W->wk : NULL, W ? W->bk : NULL, DROP(LT_K), s, r, T, D, kvd);
        lin_bwd(dn_in, dv, a->xn1, a->ax[LT_V], &w->wv, &P[LT_V], GP(LT_V), W ? &W->wv : NULL, W ? W->bv : NULL, DROP(LT_V), s, r, T, D, kvd);
        k_rmsnorm_backward(tmp, W ? W->attn_norm : NULL, dn_in, a->xin, w->attn_norm, T, D, c->norm_eps, c->norm_plus_one);
        add_to(dx, tmp, (size_t)T * D);
    }
#undef DROP
#undef GP
    if (mg) {  // embedding rows: d E[token] += emb_scale · d x
        for (int i = 0; i < T; i++) {
            float *row = (float *)mg->embed.data + (size_t)b->tokens[i] * D;
            for (int j = 0; j < D; j++) row[j] += emb_scale * dx[(size_t)i * D + j];
        }
    }
    free_acts(acts, c->n_layers);
    free(x), free(dx), free(tmp), free(dF), free(dG), free(dU), free(dq), free(dk), free(dv), free(datt);
    free(dbranch), free(dn_in), free(krows), free(vrows), free(rec_start), free(lo_g), free(lo_l), free(hi);
    return loss;
}

