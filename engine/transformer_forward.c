// The forward pass of the model, once for every backend: embedding, each block (attention and gated MLP, with the
// architectures' options: biases, q/k norms, sandwich norms, sliding windows, soft-caps) and the head, as logits
// (inference over a KV cache) or as the fused loss (training and evaluation over a packed batch).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dropout_mask.h"
#include "transformer.h"
#include "util.h"

#define TRY(call)                   \
    do {                            \
        if ((call) != 0) return -1; \
    } while (0)

ModelWeights model_weights(const Model *m) {
    return (ModelWeights){m->embed, m->lm_head, m->final_norm, m->inv_freq_global, m->inv_freq_local, m->layers};
}

const LoraPair *adapter_pair(const Lora *adapter, int layer, LoraTarget target) {
    if (!adapter) return NULL;
    const LoraPair *p = &adapter->w[layer * LT_COUNT + target];
    return p->A ? p : NULL;
}

// One call's state: the residual stream and the work buffers every block reuses.
typedef struct {
    const Transformer *t;
    const TokenPlan *p;
    const KvSpace *kv;  // inference: the cache the blocks write and read; NULL for a packed batch
    const TrainStep *step;
    int keep;  // a training step: each block keeps its LayerActs
    int again;  // transformer_recompute_block: the block alone, not the next one's norm
    float *x, *xn, *br;  // [n, D] residual stream, normed input of the next sub-block, branch output
    float *h;  // [n, F] gated activation
    float *xd;  // [n, widest] dropout's masked adapter input
    // xn, h and the attention's output rounded to bf16 by the ops that make them, for the bf16 GEMMs that read them
    // (NULL: the weights are fp32, or the backend rounds no GEMM's input)
    uint16_t *xn16, *h16, *att16;  // [n, D], [n, F], [n, Hq·hd]
} Fwd;

// every buffer of a pass is written whole by the op that fills it (the accumulated gradients are filled with
// zeros first, in the open), so none needs zeroing when it is made
static float *floats(const Backend *be, size_t n) { return be->alloc_scratch(sizeof(float) * (n ? n : 1)); }
static uint16_t *halves(const Backend *be, size_t n) { return be->alloc_scratch(sizeof(uint16_t) * (n ? n : 1)); }

// Whether the producers of a linear's input round it too: a backend whose bf16 GEMMs read bf16, and W in bf16.
static int rounds_input(const Transformer *t, const Linear *W) { return t->be->rounds_gemm_inputs && W->type == LD_BF16; }

int transformer_widest_input(const ModelConfig *c) {
    int qd = c->n_heads * c->head_dim, w = c->dim > qd ? c->dim : qd;
    return w > c->ffn_dim ? w : c->ffn_dim;
}

// y[n,out] = x·Wᵀ + bias + s·(drop(x)·Aᵀ)·Bᵀ on layer l's target (x16: x rounded, or NULL); ax[r,n] keeps
// (drop(x)·Aᵀ)ᵀ. Dropout touches the adapter's input only, as PEFT applies it.
static int linear(const Fwd *f, int l, LoraTarget target, float *y, float *ax, const float *x, const uint16_t *x16, const Linear *W,
                  const float *bias, int in, int out) {
    const Backend *be = f->t->be;
    const Lora *ad = f->t->adapter;
    const LoraPair *pr = adapter_pair(ad, l, target);
    int n = f->p->n;
    float drop = f->step ? f->step->dropout : 0;
    if (!pr) return be->lora_linear(y, NULL, x, x16, W->data, W->type, bias, NULL, NULL, 0, n, in, out, 0);
    if (drop <= 0) return be->lora_linear(y, ax, x, x16, W->data, W->type, bias, pr->A, pr->B, ad->scale, n, in, out, ad->rank);
    TRY(be->lora_linear(y, NULL, x, x16, W->data, W->type, bias, NULL, NULL, 0, n, in, out, 0));
    TRY(be->dropout(f->xd, x, (size_t)n * in, drop, ld_dropout_stream(f->step->dropout_seed, l, target), (uint64_t)f->step->row0 * in));
    return be->lora_linear(y, ax, f->xd, NULL, NULL, W->type, NULL, pr->A, pr->B, ad->scale, n, in, out, ad->rank);
}

int adapter_stack(const Lora *ad, int l, const LoraTarget *targets, int count, float *const *ax, int n, const float **A, float **axT) {
    *A = NULL, *axT = NULL;
    int m = 0;
    for (int i = 0; i < count; i++) {
        const LoraPair *pr = adapter_pair(ad, l, targets[i]);
        if (!pr) continue;
        if (!m) *A = pr->A, *axT = ax[i];
        size_t at = (size_t)m++ * ad->rank;
        if (pr->A != *A + at * pr->in || ax[i] != *axT + at * n) return -1;
    }
    return 0;
}

// The linears of layer l that read one input x[n,in] (q, k, v; gate, up), each given its target, output, weight,
// bias and width: one call to the backend's shared-input op over the adapters' stack, or linear() each where
// dropout gives every adapter its own masked copy of x.
typedef struct {
    LoraTarget target;
    float *y, *ax;
    const Linear *W;
    const float *bias;
    int out;
} Proj;

static int linears(const Fwd *f, int l, const Proj *pj, int count, const float *x, const uint16_t *x16, int in) {
    const Lora *ad = f->t->adapter;
    LoraTarget targets[3];
    float *ax[3], *axT;
    const float *A;
    for (int i = 0; i < count; i++) targets[i] = pj[i].target, ax[i] = pj[i].ax;
    if ((ad && f->step && f->step->dropout > 0) || adapter_stack(ad, l, targets, count, ax, f->p->n, &A, &axT)) {
        for (int i = 0; i < count; i++) TRY(linear(f, l, pj[i].target, pj[i].y, pj[i].ax, x, x16, pj[i].W, pj[i].bias, in, pj[i].out));
        return 0;
    }
    LoraLinearJob jobs[3];
    for (int i = 0; i < count; i++) {
        const LoraPair *pr = adapter_pair(ad, l, pj[i].target);
        jobs[i] = (LoraLinearJob){pj[i].y, pj[i].W->data, pj[i].W->type, pj[i].bias, pr ? pr->B : NULL, pj[i].out};
    }
    return f->t->be->lora_linears(jobs, count, axT, x, x16, A, ad ? ad->scale : 0, f->p->n, in, ad ? ad->rank : 0);
}

// ---- what a block keeps ----------------------------------------------------------------------------------

// The buffers of a block's activations with their widths: the always-needed ones, then what only the backward
// reads (kept when training).
static int acts_alloc(const Fwd *f, int l, LayerActs *a) {
    const ModelConfig *c = f->t->cfg;
    const Backend *be = f->t->be;
    const Lora *ad = f->t->adapter;
    size_t n = f->p->n, D = c->dim, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    const LayerWeights *w = &f->t->w.layers[l];
    struct {
        float **buf;
        size_t width;
        int want;
    } all[] = {
        {&a->q, qd, 1},
        {&a->k, kvd, 1},
        {&a->v, kvd, 1},
        {&a->att, qd, 1},
        {&a->gt, F, 1},
        {&a->u, F, 1},
        {&a->lse, (size_t)c->n_heads, f->keep},
        {&a->q_pre, qd, f->keep && c->qk_norm},
        {&a->k_pre, kvd, f->keep && c->qk_norm},
        {&a->o_pre, D, f->keep && w->post_attn_norm},
        {&a->dn_pre, D, f->keep && w->post_ffn_norm},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i].want && !(*all[i].buf = floats(be, n * all[i].width))) return -1;
    size_t targeted = 0;
    for (int t = 0; t < LT_COUNT; t++) targeted += adapter_pair(ad, l, (LoraTarget)t) != NULL;
    if (!targeted) return 0;
    if (!(a->ax_all = floats(be, targeted * ad->rank * n))) return -1;
    for (int t = 0, j = 0; t < LT_COUNT; t++)
        if (adapter_pair(ad, l, (LoraTarget)t)) a->ax[t] = a->ax_all + (size_t)j++ * ad->rank * n;
    return 0;
}

// What the backward reads from a block, with each buffer's width (the ones bf16_acts narrows between the passes).
static int acts_kept(const ModelConfig *c, LayerActs *a, float ***field, size_t *width) {
    size_t D = c->dim, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    float **f[] = {&a->xin, &a->q_pre, &a->k_pre, &a->q, &a->k, &a->v, &a->att, &a->o_pre, &a->xmid, &a->gt, &a->u, &a->dn_pre};
    size_t w[] = {D, qd, kvd, qd, kvd, kvd, qd, D, D, F, F, D};
    int count = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (*f[i]) field[count] = f[i], width[count++] = w[i];
    return count;
}

// (one op for the block's buffers together)
int layer_acts_convert(const Transformer *t, LayerActs *a, int n, int to_bf16) {
    const Backend *be = t->be;
    float **field[16];
    size_t width[16];
    LdConvertRun runs[16];
    int count = acts_kept(t->cfg, a, field, width), made = 0, rc = 0;
    for (; made < count && !rc; made++) {
        size_t len = width[made] * (size_t)n;
        runs[made] = (LdConvertRun){be->alloc_scratch((to_bf16 ? 2 : 4) * (len ? len : 1)), *field[made], len};
        rc = !runs[made].dst;
    }
    if (!rc) rc = to_bf16 ? be->to_bf16(runs, count) : be->from_bf16(runs, count);
    for (int i = 0; i < made; i++) {  // the converted buffers replace the kept ones; after a failure they go
        be->release(rc ? runs[i].dst : *field[i]);
        if (!rc) *field[i] = runs[i].dst;
    }
    return rc ? -1 : 0;
}

void layer_acts_free(const Backend *be, LayerActs *a) {
    float *all[] = {a->xin, a->q_pre, a->k_pre, a->q, a->k, a->v, a->att, a->lse, a->o_pre, a->xmid, a->gt, a->u, a->dn_pre};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->release(all[i]);
    be->release(a->ax_all);
    memset(a, 0, sizeof *a);
}

void activations_free(const Transformer *t, Activations *a) {
    if (!a) return;
    for (int l = 0; a->layers && l < t->cfg->n_layers; l++) layer_acts_free(t->be, &a->layers[l]);
    t->be->release(a->x_final), t->be->release(a->dx_final);
    free(a->layers), free(a);
}

// ---- a block ------------------------------------------------------------------------------------------

// Layer l's rotary frequencies (Gemma 3's local layers have their own base).
static const float *inv_freq(const Transformer *t, int l) { return t->cfg->layer_local[l] ? t->w.inv_freq_local : t->w.inv_freq_global; }

// q and k of one block: projections, Gemma 3's norms over head_dim (the pre-norm values kept for the backward),
// rotary positions (with a KV cache, applied as the keys go into it: attend()).
static int attention_inputs(const Fwd *f, int l, LayerActs *a) {
    const Transformer *t = f->t;
    const Backend *be = t->be;
    const ModelConfig *c = t->cfg;
    const LayerWeights *w = &t->w.layers[l];
    int n = f->p->n, D = c->dim, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads, qd = Hq * hd, kvd = Hkv * hd;
    Proj qkv[3] = {{LT_Q, a->q, a->ax[LT_Q], &w->wq, w->bq, qd},
                   {LT_K, a->k, a->ax[LT_K], &w->wk, w->bk, kvd},
                   {LT_V, a->v, a->ax[LT_V], &w->wv, w->bv, kvd}};
    TRY(linears(f, l, qkv, 3, f->xn, f->xn16, D));
    if (c->qk_norm) {
        if (a->q_pre) {
            TRY(be->copy(a->q_pre, a->q, (size_t)n * qd));
            TRY(be->copy(a->k_pre, a->k, (size_t)n * kvd));
        }
        TRY(be->rmsnorm(a->q, NULL, a->q, w->q_norm, n * Hq, hd, c->norm_eps, c->norm_plus_one));
        TRY(be->rmsnorm(a->k, NULL, a->k, w->k_norm, n * Hkv, hd, c->norm_eps, c->norm_plus_one));
    }
    if (f->kv) return 0;
    return be->rope(a->q, a->k, f->p->pos, inv_freq(t, l), n, Hq, Hkv, hd);
}

// att = softmax(q·kᵀ)·v over each token's key range: the batch's own keys, or the cache's after writing this
// call's keys (rotated, and q with them) and values into it.
static int attend(const Fwd *f, int l, LayerActs *a) {
    const ModelConfig *c = f->t->cfg;
    const Backend *be = f->t->be;
    const TokenPlan *p = f->p;
    int n = p->n, Hq = c->n_heads, hd = c->head_dim, kvd = c->n_kv_heads * hd;
    KvRows kv = {a->k, a->v, LD_F32, NULL, 0};
    if (f->kv) {  // layer l's part of the cache
        size_t at = (size_t)l * f->kv->rows * kvd * ld_dtype_nbytes(f->kv->cache.type, 1);
        kv = f->kv->cache;
        kv.k = (char *)kv.k + at, kv.v = (char *)kv.v + at;
        TRY(be->rope_kv_write(kv, a->q, a->k, a->v, p->kv_row, p->pos, inv_freq(f->t, l), n, Hq, c->n_kv_heads, hd));
    }
    const int *lo = c->layer_local[l] ? p->lo_local : p->lo_global;
    int s = p->n_single;
    size_t qd = (size_t)Hq * hd;
    if (s)  // decode tokens, one by one
        TRY(be->attention(a->att, f->att16, a->lse, a->q, kv, p->kv_base, lo, p->hi, s, Hq, c->n_kv_heads, hd, c->attn_scale,
                          c->attn_softcap));
    if (s == n) return 0;
    return be->attention(a->att + s * qd, f->att16 ? f->att16 + s * qd : NULL, a->lse ? a->lse + (size_t)s * Hq : NULL, a->q + s * qd, kv,
                         NULL, lo + s, p->hi + s, n - s, Hq, c->n_kv_heads, hd, c->attn_scale, c->attn_softcap);
}

// br = post_norm(linear output) on Gemma 2/3 (the pre-norm output kept in pre when training), else the output itself.
static int branch_out(const Fwd *f, int l, LoraTarget target, const float *x, const uint16_t *x16, const Linear *W, const float *bias,
                      const float *post_norm, float *ax, float *pre, int in) {
    const ModelConfig *c = f->t->cfg;
    int n = f->p->n, D = c->dim;
    float *o = post_norm && pre ? pre : f->br;
    TRY(linear(f, l, target, o, ax, x, x16, W, bias, in, D));
    if (!post_norm) return 0;
    return f->t->be->rmsnorm(f->br, NULL, o, post_norm, n, D, c->norm_eps, c->norm_plus_one);
}

// x += br on the residual stream, and f->xn = norm(x) where norm is set. keep (NULL: none) gets the stream as it
// was, for the backward (a block's input or middle): the sum then goes into br's buffer (br + x, the same bits),
// which becomes the stream, and br a new buffer — a hand-over where a copy of x was.
static int residual_add(Fwd *f, const float *norm, float **keep) {
    const Backend *be = f->t->be;
    const ModelConfig *c = f->t->cfg;
    int n = f->p->n, D = c->dim;
    float *sum = keep ? f->br : f->x, *other = keep ? f->x : f->br;
    TRY(norm ? be->add_rmsnorm(f->xn, f->xn16, sum, other, norm, n, D, c->norm_eps, c->norm_plus_one)
             : be->add(sum, NULL, other, (size_t)n * D));
    if (!keep) return 0;
    *keep = f->x, f->x = sum;
    return (f->br = floats(be, (size_t)n * D)) ? 0 : -1;
}

// One block. On entry f->xn holds attn_norm(x) (the previous block's fused add); on exit x holds the block's output
// and f->xn the next block's attn_norm of it. keep_in (NULL: none) gets the block's input, a->xmid its middle when
// the pass keeps activations.
static int block_forward(Fwd *f, int l, LayerActs *a, float **keep_in) {
    const Transformer *t = f->t;
    const Backend *be = t->be;
    const ModelConfig *c = t->cfg;
    const LayerWeights *w = &t->w.layers[l];
    int n = f->p->n, F = c->ffn_dim, qd = c->n_heads * c->head_dim;
    TRY(attention_inputs(f, l, a));
    TRY(attend(f, l, a));
    TRY(branch_out(f, l, LT_O, a->att, f->att16, &w->wo, w->bo, w->post_attn_norm, a->ax[LT_O], a->o_pre, qd));
    TRY(residual_add(f, w->ffn_norm, keep_in));  // x += attention
    Proj gate_up[2] = {{LT_GATE, a->gt, a->ax[LT_GATE], &w->w_gate, NULL, F}, {LT_UP, a->u, a->ax[LT_UP], &w->w_up, NULL, F}};
    TRY(linears(f, l, gate_up, 2, f->xn, f->xn16, c->dim));
    TRY(be->gated(c->act, f->h, f->h16, a->gt, a->u, (size_t)n * F));
    TRY(branch_out(f, l, LT_DOWN, f->h, f->h16, &w->w_down, NULL, w->post_ffn_norm, a->ax[LT_DOWN], a->dn_pre, F));
    if (f->again) {  // the block alone: its middle is all the stream it keeps
        a->xmid = f->x, f->x = NULL;
        return 0;
    }
    return residual_add(f, l + 1 < c->n_layers ? t->w.layers[l + 1].attn_norm : NULL, f->keep ? &a->xmid : NULL);
}

// ---- the whole stack --------------------------------------------------------------------------------------

static void fwd_free(Fwd *f) {
    const Backend *be = f->t->be;
    be->release(f->x), be->release(f->xn), be->release(f->br), be->release(f->h), be->release(f->xd);
    be->release(f->xn16), be->release(f->h16), be->release(f->att16);
}

// The residual stream and the work buffers of a pass.
static int fwd_alloc(Fwd *f) {
    const Backend *be = f->t->be;
    const ModelConfig *c = f->t->cfg;
    size_t n = f->p->n, D = c->dim;
    int dropping = f->step && f->step->dropout > 0 && f->t->adapter;
    if (!(f->x = floats(be, n * D)) || !(f->xn = floats(be, n * D)) || !(f->br = floats(be, n * D)) || !(f->h = floats(be, n * c->ffn_dim)))
        return -1;
    if (dropping && !(f->xd = floats(be, n * transformer_widest_input(c)))) return -1;
    const LayerWeights *w = &f->t->w.layers[0];  // (every block's linears in one format)
    if (rounds_input(f->t, &w->wq) && !(f->xn16 = halves(be, n * D))) return -1;
    if (rounds_input(f->t, &w->wo) && !(f->att16 = halves(be, n * c->n_heads * c->head_dim))) return -1;
    return rounds_input(f->t, &w->w_down) && !(f->h16 = halves(be, n * c->ffn_dim)) ? -1 : 0;
}

// Embedding, then every block; kept (keep != NULL) gets each block's activations (t->recompute: its input alone),
// else one set is reused.
static int run_blocks(Fwd *f, LayerActs *kept) {
    const Transformer *t = f->t;
    const Backend *be = t->be;
    const ModelConfig *c = t->cfg;
    size_t n = f->p->n, D = c->dim;
    TRY(fwd_alloc(f));
    TRY(be->embedding(f->x, t->w.embed.data, t->w.embed.type, f->p->tokens, (int)n, (int)D, c->embed_scale ? sqrtf((float)D) : 1.0f));
    TRY(be->rmsnorm(f->xn, f->xn16, f->x, t->w.layers[0].attn_norm, (int)n, (int)D, c->norm_eps, c->norm_plus_one));
    LayerActs scratch = {0};
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        LayerActs *a = kept && !t->recompute ? &kept[l] : &scratch;
        if (a != &scratch || l == 0) rc = acts_alloc(f, l, a);
        float **keep_in = !kept ? NULL : t->recompute ? &kept[l].xin : &a->xin;
        if (!rc) rc = block_forward(f, l, a, keep_in);
        if (!rc && a != &scratch && t->bf16_acts) rc = layer_acts_convert(t, a, (int)n, 1);
    }
    layer_acts_free(be, &scratch);
    return rc;
}

int transformer_logits(const Transformer *t, const TokenPlan *p, const KvSpace *kv, const int *out_rows, int n_out, float *logits) {
    const Backend *be = t->be;
    const ModelConfig *c = t->cfg;
    Fwd f = {.t = t, .p = p, .kv = kv};
    int D = c->dim, V = c->vocab, rc = run_blocks(&f, NULL);
    float *xo = rc || !n_out ? NULL : floats(be, (size_t)n_out * D);
    uint16_t *xo16 = xo && rounds_input(t, &t->w.lm_head) ? halves(be, (size_t)n_out * D) : NULL;
    if (!rc && n_out) {
        rc = !xo || (rounds_input(t, &t->w.lm_head) && !xo16) || be->gather_rows(xo, NULL, f.x, out_rows, n_out, D) ||
             be->rmsnorm(xo, xo16, xo, t->w.final_norm, n_out, D, c->norm_eps, c->norm_plus_one) ||
             be->lora_linear(logits, NULL, xo, xo16, t->w.lm_head.data, t->w.lm_head.type, NULL, NULL, NULL, 0, n_out, D, V, 0) ||
             (c->final_softcap > 0 && be->softcap(logits, (size_t)n_out * V, c->final_softcap));
    }
    be->release(xo), be->release(xo16);
    fwd_free(&f);
    return rc ? -1 : 0;
}

// Rows of logits per chunk of the fused head + loss: about 32 MiB of them whatever the vocabulary.
static int head_rows(int vocab) {
    int rows = (int)((8u << 20) / (unsigned)(vocab > 0 ? vocab : 1));
    return rows < 16 ? 16 : rows;
}

// The final norm and the fused head + loss (never the whole [n, V] logits); a training step also gets the gradient
// at the norm's output in dxf and the head's weight gradient.
static int head_loss(const Fwd *f, const int *targets, float *xf, float *dxf, float *loss, int *n_counted) {
    const Transformer *t = f->t;
    const ModelConfig *c = t->cfg;
    const TrainStep *st = f->step;
    int n = f->p->n, D = c->dim, V = c->vocab;
    float *dw = st && st->weight_grad ? (float *)st->weight_grad->lm_head.data : NULL;
    TRY(t->be->rmsnorm(xf, NULL, f->x, t->w.final_norm, n, D, c->norm_eps, c->norm_plus_one));
    return t->be->linear_cross_entropy(dxf, dw, xf, t->w.lm_head.data, t->w.lm_head.type, targets, n, D, V, c->final_softcap, -100,
                                       head_rows(V), st ? st->loss_norm : 0, loss, n_counted);
}

int transformer_forward_loss(const Transformer *t, const TokenPlan *p, const int *targets, const TrainStep *step, Activations **keep,
                             float *loss, int *n_counted) {
    const Backend *be = t->be;
    size_t n = p->n, D = t->cfg->dim;
    Fwd f = {.t = t, .p = p, .step = step, .keep = keep && !t->recompute};
    Activations *a = keep ? ld_xcalloc(1, sizeof *a) : NULL;
    if (a) a->layers = ld_xcalloc((size_t)t->cfg->n_layers, sizeof(LayerActs));
    float *xf = NULL;
    int rc = run_blocks(&f, a ? a->layers : NULL);
    if (!rc) rc = !(xf = floats(be, n * D)) || (a && !(a->dx_final = floats(be, n * D)));
    if (!rc) rc = head_loss(&f, targets, xf, a ? a->dx_final : NULL, loss, n_counted);
    be->release(xf);
    if (a && !rc) a->x_final = f.x, f.x = NULL;  // the backward starts from the final norm's input
    fwd_free(&f);
    if (rc) {
        activations_free(t, a);
        return -1;
    }
    if (keep) *keep = a;
    return 0;
}

int transformer_recompute_block(const Transformer *t, const TokenPlan *p, const TrainStep *step, int l, const float *xin, LayerActs *a) {
    const ModelConfig *c = t->cfg;
    size_t n = p->n, D = c->dim;
    Fwd f = {.t = t, .p = p, .step = step, .keep = 1, .again = 1};
    int rc = fwd_alloc(&f) || t->be->copy(f.x, xin, n * D) ||
             t->be->rmsnorm(f.xn, f.xn16, xin, t->w.layers[l].attn_norm, (int)n, (int)D, c->norm_eps, c->norm_plus_one) ||
             acts_alloc(&f, l, a) || block_forward(&f, l, a, NULL);
    fwd_free(&f);
    if (rc) layer_acts_free(t->be, a);
    a->xin = rc ? NULL : (float *)xin;
    return rc ? -1 : 0;
}
