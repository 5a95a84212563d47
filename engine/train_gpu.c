#include "train_gpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifndef LLAMADUO_HAVE_CUDA

GpuTrainer *gpu_trainer_new(const Model *m, const Lora *lora, LdDtype wt) {
    (void)m, (void)lora, (void)wt;
    ld_set_error("this build has no CUDA backend (nvcc was not found when it was configured)");
    return NULL;
}
void gpu_trainer_free(GpuTrainer *g) { (void)g; }
float gpu_trainer_loss_and_grad(GpuTrainer *g, const TrainBatch *b, int *n, int training, uint64_t seed) {
    return (void)g, (void)b, (void)n, (void)training, (void)seed, NAN;
}
void gpu_trainer_zero_grad(GpuTrainer *g) { (void)g; }
double gpu_trainer_adamw(GpuTrainer *g, float lr, float b1, float b2, float eps, float wd, float mn) {
    return (void)g, (void)lr, (void)b1, (void)b2, (void)eps, (void)wd, (void)mn, NAN;
}
int gpu_trainer_download(GpuTrainer *g, Lora *l) { return (void)g, (void)l, -1; }
void gpu_trainer_scale_grad(GpuTrainer *g, float s) { (void)g, (void)s; }
int gpu_trainer_save_state(GpuTrainer *g, struct AdamW *o) { return (void)g, (void)o, -1; }
int gpu_trainer_load_state(GpuTrainer *g, const struct AdamW *o) { return (void)g, (void)o, -1; }

#else

#include "cuda_device.h"
#include "kernels_cuda.h"
#include "gpu_weights.h"
#include "optim.h"

typedef struct {  // one targeted linear's adapter: values, gradients, AdamW moments
    float *A, *B, *dA, *dB, *mA, *vA, *mB, *vB;
    int in, out;
} DevPair;

struct GpuTrainer {
    const Model *m;
    int r, step;
    float s, dropout;
    GpuWeights *w;  // the frozen base
    DevPair *P;     // [n_layers][LT_COUNT]
};

GpuTrainer *gpu_trainer_new(const Model *m, const Lora *lora, LdDtype wt) {
    if (ld_cuda_device_count() == 0) {
        ld_set_error("no CUDA device found");
        return NULL;
    }
    const ModelConfig *c = &m->cfg;
    int err = 0;
    GpuTrainer *g = ld_xcalloc(1, sizeof *g);
    g->m = m, g->r = lora->rank, g->s = lora->scale, g->dropout = lora->dropout;
    if (!(g->w = gpu_weights_upload(m, NULL, wt))) {
        free(g);
        return NULL;
    }
    g->P = ld_xcalloc((size_t)c->n_layers * LT_COUNT, sizeof(DevPair));
    for (int l = 0; l < c->n_layers && !err; l++)
        for (int t = 0; t < LT_COUNT && !err; t++) {
            const LoraPair *p = &lora->w[l * LT_COUNT + t];
            DevPair *q = &g->P[l * LT_COUNT + t];
            if (!p->A) continue;
            size_t na = (size_t)g->r * p->in, nb = (size_t)p->out * g->r;
            q->in = p->in, q->out = p->out;
            q->A = gpu_upload_floats(p->A, na, &err), q->B = gpu_upload_floats(p->B, nb, &err);
            q->dA = gpu_zeros(na, &err), q->dB = gpu_zeros(nb, &err), q->mA = gpu_zeros(na, &err), q->vA = gpu_zeros(na, &err);
            q->mB = gpu_zeros(nb, &err), q->vB = gpu_zeros(nb, &err);
        }
    if (err) {
        ld_set_error("uploading the model to the GPU: %s", kc_last_error());
        gpu_trainer_free(g);
        return NULL;
    }
    return g;
}

void gpu_trainer_free(GpuTrainer *g) {
    if (!g) return;
    for (int i = 0; g->P && i < g->m->cfg.n_layers * LT_COUNT; i++) {
        DevPair *q = &g->P[i];
        float *ps[] = {q->A, q->B, q->dA, q->dB, q->mA, q->vA, q->mB, q->vB};
        for (size_t k = 0; k < 8; k++) kc_free(ps[k]);
    }
    gpu_weights_free(g->w);
    free(g->P), free(g);
}

void gpu_trainer_zero_grad(GpuTrainer *g) {
    for (int i = 0; i < g->m->cfg.n_layers * LT_COUNT; i++)
        if (g->P[i].A) kc_fill(g->P[i].dA, 0, (size_t)g->r * g->P[i].in), kc_fill(g->P[i].dB, 0, (size_t)g->P[i].out * g->r);
}

// ---- the step: backprop.c's sequence of ops, on the device ------------------------------------------------

// What one layer's forward keeps for its backward. The normed inputs of the attention and MLP blocks and the
// gated activation h are recomputed in the backward pass from xin, xmid and gt/u instead (cheap elementwise work;
// a third of the activation memory of a Llama-shaped layer).
typedef struct {
    float *xin, *q_pre, *k_pre, *q, *k, *v, *att, *lse, *o_pre, *xmid, *gt, *u, *dn_pre, *ax[LT_COUNT];  // lse [T, Hq]
} Acts;

// With the base in bf16, what a layer keeps for its backward is kept in bf16 too between the passes (half the
// activation memory; the backward widens each buffer back to fp32 before use). The fields then hold bf16 data.
static void acts_fields(Acts *a, int T, const ModelConfig *c, float ***field, size_t *n, int *count) {
    size_t D = c->dim, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    float **f[] = {&a->xin, &a->q_pre, &a->k_pre, &a->q, &a->k, &a->v, &a->att, &a->o_pre, &a->xmid, &a->gt, &a->u, &a->dn_pre};
    size_t w[] = {D, qd, kvd, qd, kvd, kvd, qd, D, D, F, F, D};
    *count = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (*f[i]) field[*count] = f[i], n[(*count)++] = w[i] * (size_t)T;
}

static void acts_convert(Acts *a, int T, const ModelConfig *c, int to_bf16, int *err) {
    float **field[16];
    size_t n[16];
    int count;
    acts_fields(a, T, c, field, n, &count);
    for (int i = 0; i < count && !*err; i++) {
        void *to = kc_alloc((to_bf16 ? 2 : 4) * n[i]);
        if (!to || (to_bf16 ? kc_to_bf16(to, *field[i], n[i]) : kc_from_bf16(to, *field[i], n[i]))) {
            kc_free(to);
            *err = 1;
            return;
        }
        kc_free(*field[i]);
        *field[i] = to;
    }
}

static void acts_free(Acts *a) {
    float *all[] = {a->xin, a->q_pre, a->k_pre, a->q, a->k, a->v, a->att, a->lse, a->o_pre, a->xmid, a->gt, a->u, a->dn_pre};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kc_free(all[i]);
    for (int t = 0; t < LT_COUNT; t++) kc_free(a->ax[t]);
    memset(a, 0, sizeof *a);
}

#define NEW(n) gpu_zeros((size_t)(n), &err)
#define OK(call) (err = err || (call) != 0)  // the first failure stops every later launch

float gpu_trainer_loss_and_grad(GpuTrainer *g, const TrainBatch *b, int *n_counted, int training, uint64_t dropout_seed) {
    const Model *m = g->m;
    const ModelConfig *c = &m->cfg;
    int T = b->T, D = c->dim, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads, F = c->ffn_dim, V = c->vocab, r = g->r;
    int qd = Hq * hd, kvd = Hkv * hd, err = 0, NL = c->n_layers;
    LdDtype wt = g->w->wt;
    float s = g->s, loss = NAN;
    int *lo_g = ld_xmalloc(sizeof(int) * (size_t)T), *lo_l = ld_xmalloc(sizeof(int) * (size_t)T), *hi = ld_xmalloc(sizeof(int) * (size_t)T);
    for (int i = 0, rcd = 0; i < T; i++) {  // causal within the token's record; the window on local layers
        while (rcd + 1 < b->n_records && i >= b->starts[rcd + 1]) rcd++;
        int start = b->starts[rcd];
        hi[i] = i, lo_g[i] = start;
        lo_l[i] = c->sliding_window && i - c->sliding_window + 1 > start ? i - c->sliding_window + 1 : start;
    }
    int *d_tok = kc_alloc(sizeof(int) * T), *d_pos = kc_alloc(sizeof(int) * T);
    int *d_lo_g = kc_alloc(sizeof(int) * T), *d_lo_l = kc_alloc(sizeof(int) * T), *d_hi = kc_alloc(sizeof(int) * T);
    err = !d_tok || !d_pos || !d_lo_g || !d_lo_l || !d_hi;
    if (!err)
        err = kc_upload(d_tok, b->tokens, sizeof(int) * T) ||
              kc_upload(d_pos, b->positions, sizeof(int) * T) || kc_upload(d_lo_g, lo_g, sizeof(int) * T) ||
              kc_upload(d_lo_l, lo_l, sizeof(int) * T) || kc_upload(d_hi, hi, sizeof(int) * T);
    Acts *A = ld_xcalloc((size_t)NL, sizeof(Acts));
    float *x = NEW(T * D), *tmp = NEW(T * D), *dyB = NEW(T * (r ? r : 1));
    float *xn = NEW(T * D), *hb = NEW((size_t)T * F);  // a layer's normed input and gated activation, rebuilt in the backward
    int widest = F > qd ? (F > D ? F : D) : (qd > D ? qd : D), dropping = training && g->dropout > 0;
    float *xdrop = dropping ? NEW((size_t)T * widest) : NULL, *dxdrop = dropping ? NEW((size_t)T * widest) : NULL;
#define STREAM(l, t) (dropout_seed ^ ((uint64_t)(l) << 40) ^ ((uint64_t)(t) << 56))  // backprop.c's mask seeds
    OK(kc_embedding(x, g->w->embed, g->w->wt, d_tok, T, D, c->embed_scale ? sqrtf((float)D) : 1.0f));
#define PAIR(l, t) (&g->P[(l) * LT_COUNT + (t)])
#define LIN(y, ax, xin, W, bias, l, t, in, out)                                                                           \
    do {                                                                                                                 \
        DevPair *p_ = PAIR(l, t);                                                                                        \
        if (dropping && p_->A) { /* dropout on the adapter's input only, as PEFT */                                      \
            OK(kc_lora_linear(y, NULL, xin, W, wt, NULL, NULL, 0, T, in, out, 0));                                       \
            OK(kc_dropout(xdrop, xin, (size_t)T * (in), g->dropout, STREAM(l, t)));                                      \
            OK(kc_lora_linear(y, ax, xdrop, NULL, wt, p_->A, p_->B, s, T, in, out, r));                                  \
        } else {                                                                                                         \
            OK(kc_lora_linear(y, ax, xin, W, wt, p_->A, p_->B, s, T, in, out, r));                                       \
        }                                                                                                                \
        OK(kc_add_bias(y, bias, T, out));                                                                                \
    } while (0)
    for (int l = 0; l < NL && !err; l++) {
        GpuLayer *w = &g->w->layers[l];
        Acts *a = &A[l];
        int local = c->layer_local[l];
        const float *inv = local ? g->w->inv_local : g->w->inv_global;
        for (int t = 0; t < LT_COUNT; t++) a->ax[t] = NEW(T * (r ? r : 1));
        a->xin = NEW(T * D), a->q = NEW(T * qd), a->k = NEW(T * kvd), a->v = NEW(T * kvd), a->att = NEW(T * qd);
        a->lse = NEW(T * Hq), a->xmid = NEW(T * D), a->gt = NEW(T * F), a->u = NEW(T * F);
        if (err) break;
        OK(kc_copy(a->xin, x, (size_t)T * D));
        OK(kc_rmsnorm(xn, x, w->attn_norm, T, D, c->norm_eps, c->norm_plus_one));
        LIN(a->q, a->ax[LT_Q], xn, w->wq, w->bq, l, LT_Q, D, qd);
        LIN(a->k, a->ax[LT_K], xn, w->wk, w->bk, l, LT_K, D, kvd);
        LIN(a->v, a->ax[LT_V], xn, w->wv, w->bv, l, LT_V, D, kvd);
        if (c->qk_norm) {
            a->q_pre = NEW(T * qd), a->k_pre = NEW(T * kvd);
            OK(kc_copy(a->q_pre, a->q, (size_t)T * qd)), OK(kc_copy(a->k_pre, a->k, (size_t)T * kvd));
            OK(kc_rmsnorm(a->q, a->q_pre, w->q_norm, T * Hq, hd, c->norm_eps, c->norm_plus_one));
            OK(kc_rmsnorm(a->k, a->k_pre, w->k_norm, T * Hkv, hd, c->norm_eps, c->norm_plus_one));
        }
        OK(kc_rope(a->q, d_pos, inv, T, Hq, hd)), OK(kc_rope(a->k, d_pos, inv, T, Hkv, hd));
        OK(kc_attention_packed(a->att, a->lse, a->q, a->k, a->v, local ? d_lo_l : d_lo_g, d_hi, T, Hq, Hkv, hd, c->attn_scale, c->attn_softcap));
        float *o = NEW(T * D);
        LIN(o, a->ax[LT_O], a->att, w->wo, w->bo, l, LT_O, qd, D);
        if (w->post_attn_norm) {
            a->o_pre = o, o = NEW(T * D);
            OK(kc_rmsnorm(o, a->o_pre, w->post_attn_norm, T, D, c->norm_eps, c->norm_plus_one));
        }
        OK(kc_add(x, o, (size_t)T * D));
        kc_free(o);
        OK(kc_copy(a->xmid, x, (size_t)T * D));
        OK(kc_rmsnorm(xn, x, w->ffn_norm, T, D, c->norm_eps, c->norm_plus_one));
        LIN(a->gt, a->ax[LT_GATE], xn, w->w_gate, NULL, l, LT_GATE, D, F);
        LIN(a->u, a->ax[LT_UP], xn, w->w_up, NULL, l, LT_UP, D, F);
        OK(kc_gated(c->act, hb, a->gt, a->u, (size_t)T * F));
        float *dn = NEW(T * D);
        LIN(dn, a->ax[LT_DOWN], hb, w->w_down, NULL, l, LT_DOWN, F, D);
        if (w->post_ffn_norm) {
            a->dn_pre = dn, dn = NEW(T * D);
            OK(kc_rmsnorm(dn, a->dn_pre, w->post_ffn_norm, T, D, c->norm_eps, c->norm_plus_one));
        }
        OK(kc_add(x, dn, (size_t)T * D));
        kc_free(dn);
        if (!training) acts_free(a);  // evaluation: nothing is kept for a backward pass
        else if (wt == LD_BF16) acts_convert(a, T, c, 1, &err);
    }
    // head and loss, fused and chunked (never the whole [T, V] logits); then back through the layers
    float *xf = NEW(T * D), *dxf = training ? NEW(T * D) : NULL, *dx = training ? NEW(T * D) : NULL;
    OK(kc_rmsnorm(xf, x, g->w->final_norm, T, D, c->norm_eps, c->norm_plus_one));
    if (!err)
        OK(kc_linear_cross_entropy(dxf, xf, g->w->lm_head, wt, b->targets, T, D, V, c->final_softcap, -100, head_chunk_rows(V), &loss,
                                   n_counted));
    if (training) OK(kc_rmsnorm_backward(dx, NULL, dxf, x, g->w->final_norm, T, D, c->norm_eps, c->norm_plus_one));
    kc_free(xf), kc_free(dxf);
#define GRAD(n) (training ? NEW(n) : NULL)  // the backward pass's buffers
    float *dF = GRAD(T * F), *dG = GRAD(T * F), *dU = GRAD(T * F), *dq = GRAD(T * qd), *dk = GRAD(T * kvd), *dv = GRAD(T * kvd);
    float *datt = GRAD(T * qd), *dbranch = GRAD(T * D), *dn_in = GRAD(T * D), *t2 = GRAD(T * (F > qd ? F : qd));
#undef GRAD
#define LIN_BWD(dxout, dy, xin, W, l, t, in, out)                                                                                 \
    do {                                                                                                                         \
        DevPair *p_ = PAIR(l, t);                                                                                                \
        if (dropping && p_->A) { /* the adapter saw the masked input: its share of dx goes back through the mask */            \
            OK(kc_lora_linear_backward(dxout, NULL, NULL, NULL, dy, xin, NULL, W, wt, NULL, NULL, 0, T, in, out, 0));          \
            OK(kc_dropout(xdrop, xin, (size_t)T * (in), g->dropout, STREAM(l, t)));                                             \
            OK(kc_lora_linear_backward(dxdrop, p_->dA, p_->dB, dyB, dy, xdrop, A[l].ax[t], NULL, wt, p_->A, p_->B, s, T, in, out, r)); \
            OK(kc_dropout(dxdrop, dxdrop, (size_t)T * (in), g->dropout, STREAM(l, t)));                                         \
            OK(kc_add(dxout, dxdrop, (size_t)T * (in)));                                                                        \
        } else {                                                                                                                 \
            OK(kc_lora_linear_backward(dxout, p_->dA, p_->dB, dyB, dy, xin, A[l].ax[t], W, wt, p_->A, p_->B, s, T, in, out, r)); \
        }                                                                                                                        \
    } while (0)
    for (int l = NL - 1; l >= 0 && !err && training; l--) {
        GpuLayer *w = &g->w->layers[l];
        Acts *a = &A[l];
        if (wt == LD_BF16) acts_convert(a, T, c, 0, &err);
        int local = c->layer_local[l];
        const float *inv = local ? g->w->inv_local : g->w->inv_global;
        const float *ddn = dx;
        if (w->post_ffn_norm) {
            OK(kc_rmsnorm_backward(dbranch, NULL, dx, a->dn_pre, w->post_ffn_norm, T, D, c->norm_eps, c->norm_plus_one));
            ddn = dbranch;
        }
        OK(kc_gated(c->act, hb, a->gt, a->u, (size_t)T * F));
        LIN_BWD(dF, ddn, hb, w->w_down, l, LT_DOWN, F, D);
        OK(kc_gated_backward(c->act, dG, dU, dF, a->gt, a->u, (size_t)T * F));
        OK(kc_rmsnorm(xn, a->xmid, w->ffn_norm, T, D, c->norm_eps, c->norm_plus_one));
        LIN_BWD(dn_in, dG, xn, w->w_gate, l, LT_GATE, D, F);
        LIN_BWD(tmp, dU, xn, w->w_up, l, LT_UP, D, F);
        OK(kc_add(dn_in, tmp, (size_t)T * D));
        OK(kc_rmsnorm_backward(tmp, NULL, dn_in, a->xmid, w->ffn_norm, T, D, c->norm_eps, c->norm_plus_one));
        OK(kc_add(dx, tmp, (size_t)T * D));
        const float *dob = dx;
        if (w->post_attn_norm) {
            OK(kc_rmsnorm_backward(dbranch, NULL, dx, a->o_pre, w->post_attn_norm, T, D, c->norm_eps, c->norm_plus_one));
            dob = dbranch;
        }
        LIN_BWD(datt, dob, a->att, w->wo, l, LT_O, qd, D);
        OK(kc_fill(dk, 0, (size_t)T * kvd)), OK(kc_fill(dv, 0, (size_t)T * kvd));
        OK(kc_attention_backward(dq, dk, dv, datt, a->q, a->k, a->v, a->att, a->lse, local ? d_lo_l : d_lo_g, d_hi, T, Hq, Hkv, hd, c->attn_scale,
                                 c->attn_softcap));
        OK(kc_rope_backward(dq, d_pos, inv, T, Hq, hd)), OK(kc_rope_backward(dk, d_pos, inv, T, Hkv, hd));
        if (c->qk_norm) {
            OK(kc_rmsnorm_backward(t2, NULL, dq, a->q_pre, w->q_norm, T * Hq, hd, c->norm_eps, c->norm_plus_one));
            OK(kc_copy(dq, t2, (size_t)T * qd));
            OK(kc_rmsnorm_backward(t2, NULL, dk, a->k_pre, w->k_norm, T * Hkv, hd, c->norm_eps, c->norm_plus_one));
            OK(kc_copy(dk, t2, (size_t)T * kvd));
        }
        OK(kc_rmsnorm(xn, a->xin, w->attn_norm, T, D, c->norm_eps, c->norm_plus_one));
        LIN_BWD(dn_in, dq, xn, w->wq, l, LT_Q, D, qd);
        LIN_BWD(tmp, dk, xn, w->wk, l, LT_K, D, kvd);
        OK(kc_add(dn_in, tmp, (size_t)T * D));
        LIN_BWD(tmp, dv, xn, w->wv, l, LT_V, D, kvd);
        OK(kc_add(dn_in, tmp, (size_t)T * D));
        OK(kc_rmsnorm_backward(tmp, NULL, dn_in, a->xin, w->attn_norm, T, D, c->norm_eps, c->norm_plus_one));
        OK(kc_add(dx, tmp, (size_t)T * D));
    }
#undef LIN
#undef LIN_BWD
#undef PAIR
#undef STREAM
    if (!err) OK(kc_sync());
    if (err) {
        ld_set_error("GPU training step: %s", kc_last_error());
        loss = NAN;
    }
    for (int l = 0; l < NL; l++) acts_free(&A[l]);
    float *bufs[] = {x, tmp, dyB, xn, hb, dx, dF, dG, dU, dq, dk, dv, datt, dbranch, dn_in, t2, xdrop, dxdrop};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) kc_free(bufs[i]);
    int *ibufs[] = {d_tok, d_pos, d_lo_g, d_lo_l, d_hi};
    for (size_t i = 0; i < sizeof ibufs / sizeof ibufs[0]; i++) kc_free(ibufs[i]);
    free(A), free(lo_g), free(lo_l), free(hi);
    return loss;
}

double gpu_trainer_adamw(GpuTrainer *g, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm) {
    double ss = 0, part;
    int n = g->m->cfg.n_layers * LT_COUNT;
    for (int i = 0; i < n; i++)
        if (g->P[i].A) {
            if (kc_sumsq(g->P[i].dA, (size_t)g->r * g->P[i].in, &part)) return NAN;
            ss += part;
            if (kc_sumsq(g->P[i].dB, (size_t)g->P[i].out * g->r, &part)) return NAN;
            ss += part;
        }
    double norm = sqrt(ss);
    float clip = max_norm > 0 ? (float)(max_norm / (norm + 1e-6)) : 1.0f;  // torch's clip_grad_norm_
    g->step++;
    for (int i = 0; i < n; i++) {
        DevPair *p = &g->P[i];
        if (!p->A) continue;
        size_t na = (size_t)g->r * p->in, nb = (size_t)p->out * g->r;
        if (clip < 1.0f) kc_scale(p->dA, na, clip), kc_scale(p->dB, nb, clip);
        kc_adamw(p->A, p->dA, p->mA, p->vA, na, lr, beta1, beta2, eps, weight_decay, g->step);
        kc_adamw(p->B, p->dB, p->mB, p->vB, nb, lr, beta1, beta2, eps, weight_decay, g->step);
    }
    return norm;
}

void gpu_trainer_scale_grad(GpuTrainer *g, float s) {
    for (int i = 0; i < g->m->cfg.n_layers * LT_COUNT; i++)
        if (g->P[i].A) kc_scale(g->P[i].dA, (size_t)g->r * g->P[i].in, s), kc_scale(g->P[i].dB, (size_t)g->P[i].out * g->r, s);
}

// Walks the pairs in lora_params() order (layer, target, A then B), copying values and moments either way.
static int transfer_state(GpuTrainer *g, AdamW *opt, int to_host) {
    int k = 0;
    for (int i = 0; i < g->m->cfg.n_layers * LT_COUNT; i++) {
        DevPair *p = &g->P[i];
        if (!p->A) continue;
        for (int ab = 0; ab < 2; ab++, k++) {
            size_t n = ab ? (size_t)p->out * g->r : (size_t)g->r * p->in;
            float *dev[3] = {ab ? p->B : p->A, ab ? p->mB : p->mA, ab ? p->vB : p->vA};
            if (k >= opt->n || opt->v[k].n != n) {
                ld_set_error("the optimiser state does not match the adapter on the GPU");
                return -1;
            }
            float *host[3] = {opt->v[k].p, opt->m[k], opt->s[k]};
            for (int j = 0; j < 3; j++)
                if (to_host ? kc_download(host[j], dev[j], sizeof(float) * n) : kc_upload(dev[j], host[j], sizeof(float) * n)) {
                    ld_set_error("GPU state transfer: %s", kc_last_error());
                    return -1;
                }
        }
    }
    if (to_host) opt->step = g->step;
    else g->step = opt->step;
    return 0;
}

int gpu_trainer_save_state(GpuTrainer *g, AdamW *opt) { return transfer_state(g, opt, 1); }
int gpu_trainer_load_state(GpuTrainer *g, const AdamW *opt) { return transfer_state(g, (AdamW *)opt, 0); }

int gpu_trainer_download(GpuTrainer *g, Lora *lora) {
    for (int i = 0; i < g->m->cfg.n_layers * LT_COUNT; i++) {
        DevPair *p = &g->P[i];
        if (!p->A) continue;
        if (kc_download(lora->w[i].A, p->A, sizeof(float) * (size_t)g->r * p->in) ||
            kc_download(lora->w[i].B, p->B, sizeof(float) * (size_t)p->out * g->r)) {
            ld_set_error("downloading the adapter: %s", kc_last_error());
            return -1;
        }
    }
    return 0;
}

#endif
