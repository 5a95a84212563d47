// The backward pass of the model, once for every backend: from the fused loss's gradient back through the final
// norm, each block in reverse (recomputing its normed inputs and gated activation from what the forward kept, or
// with activation checkpointing the whole block's forward from its kept input) and the embedding; the adapter's
// gradients, and with full fine-tuning every weight's, accumulate, each stage announced as it is done
// (TrainStep.grads_final).
#include <math.h>
#include <stdlib.h>

#include "dropout_mask.h"
#include "transformer.h"
#include "util.h"

#define TRY(call)                   \
    do {                            \
        if ((call) != 0) return -1; \
    } while (0)

typedef struct {
    const Transformer *t;
    const TokenPlan *p;
    const TrainStep *step;
    float *dx;  // [n, D] the gradient of the residual stream
    float *xn, *tmp, *dbr, *dn;  // [n, D] recomputed normed input, a block's input gradient, branch gradient, norm input gradient
    float *h, *dF, *dG, *dU;  // [n, F]
    float *dq, *datt, *dk, *dv;  // [n, qd] [n, qd] [n, kvd] [n, kvd]
    float *dqk;  // [n, qd] q/k norms' input gradient
    float *xd, *dxd, *dyB;  // [n, widest] dropout's masked input and its gradient; [3r, n] the adapters' scratch
    // the output gradients of the linears whose weights are bf16, rounded by the ops that make them, for the
    // GEMMs of dx (rounds_input(); NULL: not rounded)
    uint16_t *dx16, *dbr16, *dG16, *dU16, *dq16, *dk16, *dv16;  // [n, D] x2, [n, F] x2, [n, qd], [n, kvd] x2
} Bwd;

// every buffer of a pass is written whole by the op that fills it (an input gradient by the first product into
// it), so none needs zeroing when it is made
static float *floats(const Backend *be, size_t n) { return be->alloc_scratch(sizeof(float) * (n ? n : 1)); }

// Whether a linear's output gradient is rounded by its producer (as transformer_forward.c's rounds_input for x).
static int rounds_input(const Transformer *t, const Linear *W) { return t->be->rounds_gemm_inputs && W->type == LD_BF16; }

static int bwd_alloc_rounded(Bwd *b) {
    const ModelConfig *c = b->t->cfg;
    const LayerWeights *w = &b->t->w.layers[0];
    size_t n = b->p->n, D = c->dim, F = c->ffn_dim, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    int branches = rounds_input(b->t, &w->wo) || rounds_input(b->t, &w->w_down);  // (read dx, or dbr past a post norm)
    struct {
        uint16_t **buf;
        size_t len;
        int want;
    } all[] = {
        {&b->dx16, n * D, branches && (!w->post_attn_norm || !w->post_ffn_norm)},
        {&b->dbr16, n * D, branches && (w->post_attn_norm || w->post_ffn_norm)},
        {&b->dG16, n * F, rounds_input(b->t, &w->w_gate)},
        {&b->dU16, n * F, rounds_input(b->t, &w->w_up)},
        {&b->dq16, n * qd, rounds_input(b->t, &w->wq)},
        {&b->dk16, n * kvd, rounds_input(b->t, &w->wk)},
        {&b->dv16, n * kvd, rounds_input(b->t, &w->wv)},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i].want && !(*all[i].buf = b->t->be->alloc_scratch(sizeof(uint16_t) * (all[i].len ? all[i].len : 1)))) return -1;
    return 0;
}

static int bwd_alloc(Bwd *b) {
    const ModelConfig *c = b->t->cfg;
    const Lora *ad = b->t->adapter;
    size_t n = b->p->n, D = c->dim, F = c->ffn_dim, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = (size_t)transformer_widest_input(c);
    int dropping = ad && b->step->dropout > 0;
    struct {
        float **buf;
        size_t len;
        int want;
    } all[] = {
        {&b->dx, n * D, 1},
        {&b->xn, n * D, 1},
        {&b->tmp, n * D, 1},
        {&b->dbr, n * D, 1},
        {&b->dn, n * D, 1},
        {&b->h, n * F, 1},
        {&b->dF, n * F, 1},
        {&b->dG, n * F, 1},
        {&b->dU, n * F, 1},
        {&b->dq, n * qd, 1},
        {&b->datt, n * qd, 1},
        {&b->dk, n * kvd, 1},
        {&b->dv, n * kvd, 1},
        {&b->dqk, n * qd, c->qk_norm},
        {&b->xd, n * wide, dropping},
        {&b->dxd, n * wide, dropping},
        {&b->dyB, n * 3 * (ad ? ad->rank : 0), ad != NULL},  // (up to q, k and v stacked)
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i].want && !(*all[i].buf = floats(b->t->be, all[i].len))) return -1;
    return bwd_alloc_rounded(b);
}

static void bwd_free(Bwd *b) {
    float *all[] = {b->dx, b->xn,   b->tmp, b->dbr, b->dn,  b->h,  b->dF,  b->dG, b->dU,
                    b->dq, b->datt, b->dk,  b->dv,  b->dqk, b->xd, b->dxd, b->dyB};
    uint16_t *rounded[] = {b->dx16, b->dbr16, b->dG16, b->dU16, b->dq16, b->dk16, b->dv16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) b->t->be->release(all[i]);
    for (size_t i = 0; i < sizeof rounded / sizeof rounded[0]; i++) b->t->be->release(rounded[i]);
}

// dx[n,in] (+= when dx_add, else written) the input gradient of linear() on layer l's target
// (transformer_forward.c) given dy (dy16: rounded, or NULL): through the base weight, and through the adapter and
// its dropout mask; the adapter's gradients, and the weight's (dW, dbias) when given, accumulate.
static int linear_backward(const Bwd *b, int l, LoraTarget target, float *dx, int dx_add, const float *dy, const uint16_t *dy16,
                           const float *x, const float *ax, const Linear *W, Linear *dW, float *dbias, int in, int out) {
    const Backend *be = b->t->be;
    const Lora *ad = b->t->adapter;
    const LoraPair *pr = adapter_pair(ad, l, target);
    LoraPair *g = pr && b->step->adapter_grad ? &b->step->adapter_grad->w[l * LT_COUNT + target] : NULL;
    float *dw = dW ? (float *)dW->data : NULL, *gA = g ? g->A : NULL, *gB = g ? g->B : NULL;
    int n = b->p->n;
    if (!pr)
        return be->lora_linear_backward(dx, dx_add, dw, dbias, NULL, NULL, NULL, dy, dy16, x, NULL, W->data, W->type, NULL, NULL, 0, n, in,
                                        out, 0);
    float drop = b->step->dropout, s = ad->scale;
    if (drop <= 0)
        return be->lora_linear_backward(dx, dx_add, dw, dbias, gA, gB, b->dyB, dy, dy16, x, ax, W->data, W->type, pr->A, pr->B, s, n, in,
                                        out, ad->rank);
    // the adapter saw the masked input: its share of dx goes back through the same mask
    uint64_t stream = ld_dropout_stream(b->step->dropout_seed, l, target), e0 = (uint64_t)b->step->row0 * in;
    size_t len = (size_t)n * in;
    TRY(be->lora_linear_backward(dx, dx_add, dw, dbias, NULL, NULL, NULL, dy, dy16, x, NULL, W->data, W->type, NULL, NULL, 0, n, in, out,
                                 0));
    TRY(be->dropout(b->xd, x, len, drop, stream, e0));
    TRY(be->lora_linear_backward(b->dxd, 0, NULL, NULL, gA, gB, b->dyB, dy, NULL, b->xd, ax, NULL, W->type, pr->A, pr->B, s, n, in, out,
                                 ad->rank));
    TRY(be->dropout(b->dxd, b->dxd, len, drop, stream, e0));
    return be->add(dx, NULL, b->dxd, len);
}

// The backward of linears() (transformer_forward.c) on layer l's linears that read x[n,in], each given its target,
// output gradient, kept ax, weight, weight gradients and width: dx[n,in] gets the sum of their input gradients
// (written), in one call over the adapters' stack, or linear_backward() each where dropout masked each adapter's
// input its own way.
typedef struct {
    LoraTarget target;
    const float *dy;
    const uint16_t *dy16;
    float *ax;
    const Linear *W;
    Linear *dW;
    float *dbias;
    int out;
} Grad;

static int linears_backward(const Bwd *b, int l, const Grad *g, int count, float *dx, const float *x, int in) {
    const Lora *ad = b->t->adapter, *dad = b->step->adapter_grad;
    LoraTarget targets[3];
    float *ax[3], *axT;
    const float *A;
    LoraLinearGrad jobs[3];
    float *dA = NULL;
    int stacked = !(ad && b->step->dropout > 0);
    for (int i = 0; i < count; i++) targets[i] = g[i].target, ax[i] = g[i].ax;
    stacked = stacked && !adapter_stack(ad, l, targets, count, ax, b->p->n, &A, &axT);
    for (int i = 0, m = 0; i < count; i++) {
        const LoraPair *pr = adapter_pair(ad, l, g[i].target);
        LoraPair *pg = pr && dad ? &dad->w[l * LT_COUNT + g[i].target] : NULL;
        if (pg && !dA) dA = pg->A;
        stacked = stacked && (!pg || pg->A == dA + (size_t)m++ * ad->rank * in);  // the gradients must lie as the adapter does
        jobs[i] = (LoraLinearGrad){g[i].dy,
                                   g[i].dy16,
                                   g[i].W->data,
                                   g[i].W->type,
                                   pr ? pr->B : NULL,
                                   pg ? pg->B : NULL,
                                   g[i].dW ? (float *)g[i].dW->data : NULL,
                                   g[i].dbias,
                                   g[i].out};
    }
    if (stacked)
        return b->t->be->lora_linears_backward(jobs, count, dx, 0, dA, b->dyB, x, axT, A, ad ? ad->scale : 0, b->p->n, in,
                                               ad ? ad->rank : 0);
    for (int i = 0; i < count; i++)
        TRY(linear_backward(b, l, g[i].target, dx, i > 0, g[i].dy, g[i].dy16, x, g[i].ax, g[i].W, g[i].dW, g[i].dbias, in, g[i].out));
    return 0;
}

// The gradient at a branch's linear output (dy16: rounded, or NULL): through Gemma 2/3's post norm (weight gradient
// into dw) when there is one.
static int branch_grad(const Bwd *b, const float *post_norm, float *dw, const float *pre, const float **dy, const uint16_t **dy16) {
    const ModelConfig *c = b->t->cfg;
    *dy = b->dx, *dy16 = b->dx16;
    if (!post_norm) return 0;
    *dy = b->dbr, *dy16 = b->dbr16;
    return b->t->be->rmsnorm_backward(b->dbr, b->dbr16, dw, b->dx, pre, post_norm, b->p->n, c->dim, c->norm_eps, c->norm_plus_one);
}

// dx += the gradient through norm(x_in) whose input gradient is in b->dn (norm weight's gradient into dw), rounded
// into dx16 for the next branch's linear.
static int norm_into_stream(const Bwd *b, float *dw, const float *x_in, const float *w) {
    const ModelConfig *c = b->t->cfg;
    int n = b->p->n, D = c->dim;
    TRY(b->t->be->rmsnorm_backward(b->tmp, NULL, dw, b->dn, x_in, w, n, D, c->norm_eps, c->norm_plus_one));
    return b->t->be->add(b->dx, b->dx16, b->tmp, (size_t)n * D);
}

// The MLP half of block l: x_out = xmid + post_ffn_norm(down(act(gate(xn)) · up(xn))), xn = ffn_norm(xmid).
static int mlp_backward(const Bwd *b, int l, const LayerActs *a, LayerWeights *gw) {
    const Transformer *t = b->t;
    const Backend *be = t->be;
    const ModelConfig *c = t->cfg;
    const LayerWeights *w = &t->w.layers[l];
    int n = b->p->n, D = c->dim, F = c->ffn_dim;
    const float *ddn;
    const uint16_t *ddn16;
    TRY(branch_grad(b, w->post_ffn_norm, gw ? gw->post_ffn_norm : NULL, a->dn_pre, &ddn, &ddn16));
    TRY(be->gated(c->act, b->h, NULL, a->gt, a->u, (size_t)n * F));
    TRY(linear_backward(b, l, LT_DOWN, b->dF, 0, ddn, ddn16, b->h, a->ax[LT_DOWN], &w->w_down, gw ? &gw->w_down : NULL, NULL, F, D));
    TRY(be->gated_backward(c->act, b->dG, b->dU, b->dG16, b->dU16, b->dF, a->gt, a->u, (size_t)n * F));
    TRY(be->rmsnorm(b->xn, NULL, a->xmid, w->ffn_norm, n, D, c->norm_eps, c->norm_plus_one));
    Grad gate_up[2] = {{LT_GATE, b->dG, b->dG16, a->ax[LT_GATE], &w->w_gate, gw ? &gw->w_gate : NULL, NULL, F},
                       {LT_UP, b->dU, b->dU16, a->ax[LT_UP], &w->w_up, gw ? &gw->w_up : NULL, NULL, F}};
    TRY(linears_backward(b, l, gate_up, 2, b->dn, b->xn, D));
    return norm_into_stream(b, gw ? gw->ffn_norm : NULL, a->xmid, w->ffn_norm);
}

// dq and dk back through rope and Gemma 3's q/k norms (in place), rounded into dq16 and dk16 by the last op.
static int qk_backward(const Bwd *b, int l, const LayerActs *a, LayerWeights *gw) {
    const Transformer *t = b->t;
    const Backend *be = t->be;
    const ModelConfig *c = t->cfg;
    const LayerWeights *w = &t->w.layers[l];
    int n = b->p->n, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    const float *inv = c->layer_local[l] ? t->w.inv_freq_local : t->w.inv_freq_global;
    if (!c->qk_norm) return be->rope_backward(b->dq, b->dk, b->dq16, b->dk16, b->p->pos, inv, n, Hq, Hkv, hd);
    TRY(be->rope_backward(b->dq, b->dk, NULL, NULL, b->p->pos, inv, n, Hq, Hkv, hd));
    TRY(be->rmsnorm_backward(b->dqk, b->dq16, gw ? gw->q_norm : NULL, b->dq, a->q_pre, w->q_norm, n * Hq, hd, c->norm_eps,
                             c->norm_plus_one));
    TRY(be->copy(b->dq, b->dqk, (size_t)n * Hq * hd));
    TRY(be->rmsnorm_backward(b->dqk, b->dk16, gw ? gw->k_norm : NULL, b->dk, a->k_pre, w->k_norm, n * Hkv, hd, c->norm_eps,
                             c->norm_plus_one));
    return be->copy(b->dk, b->dqk, (size_t)n * Hkv * hd);
}

// The attention half of block l: xmid = xin + post_attn_norm(o(attention(q, k, v))), q/k/v from attn_norm(xin).
static int attention_backward(const Bwd *b, int l, const LayerActs *a, LayerWeights *gw) {
    const Transformer *t = b->t;
    const Backend *be = t->be;
    const ModelConfig *c = t->cfg;
    const LayerWeights *w = &t->w.layers[l];
    int n = b->p->n, D = c->dim, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads, qd = Hq * hd, kvd = Hkv * hd;
    const float *dob;
    const uint16_t *dob16;
    TRY(branch_grad(b, w->post_attn_norm, gw ? gw->post_attn_norm : NULL, a->o_pre, &dob, &dob16));
    TRY(linear_backward(b, l, LT_O, b->datt, 0, dob, dob16, a->att, a->ax[LT_O], &w->wo, gw ? &gw->wo : NULL, gw ? gw->bo : NULL, qd, D));
    const int *lo = c->layer_local[l] ? b->p->lo_local : b->p->lo_global;
    TRY(be->attention_backward(b->dq, b->dk, b->dv, b->dv16, b->datt, a->q, a->k, a->v, a->att, a->lse, lo, b->p->hi, n, Hq, Hkv, hd,
                               c->attn_scale, c->attn_softcap));
    TRY(qk_backward(b, l, a, gw));
    TRY(be->rmsnorm(b->xn, NULL, a->xin, w->attn_norm, n, D, c->norm_eps, c->norm_plus_one));
    Grad qkv[3] = {{LT_Q, b->dq, b->dq16, a->ax[LT_Q], &w->wq, gw ? &gw->wq : NULL, gw ? gw->bq : NULL, qd},
                   {LT_K, b->dk, b->dk16, a->ax[LT_K], &w->wk, gw ? &gw->wk : NULL, gw ? gw->bk : NULL, kvd},
                   {LT_V, b->dv, b->dv16, a->ax[LT_V], &w->wv, gw ? &gw->wv : NULL, gw ? gw->bv : NULL, kvd}};
    TRY(linears_backward(b, l, qkv, 3, b->dn, b->xn, D));
    return norm_into_stream(b, gw ? gw->attn_norm : NULL, a->xin, w->attn_norm);
}

static int grads_final(const Bwd *b, int layer) { return b->step->grads_final ? b->step->grads_final(b->step->grads_final_ctx, layer) : 0; }

// Block l going back, from what the forward kept of it, or (t->recompute) from its forward run again.
static int block_backward(const Bwd *b, int l, LayerActs *kept) {
    const Transformer *t = b->t;
    LayerWeights *lw = b->step->weight_grad ? &b->step->weight_grad->layers[l] : NULL;
    LayerActs again = {0}, *la = t->recompute ? &again : kept;
    if (t->recompute)
        TRY(transformer_recompute_block(t, b->p, b->step, l, kept->xin, &again));
    else if (t->bf16_acts)
        TRY(layer_acts_convert(t, la, b->p->n, 0));
    int rc = mlp_backward(b, l, la, lw) || attention_backward(b, l, la, lw);
    again.xin = NULL;  // (kept's, borrowed)
    layer_acts_free(t->be, &again);
    return rc ? -1 : grads_final(b, l);
}

static int run_backward(Bwd *b, const Activations *a) {
    const Transformer *t = b->t;
    const Backend *be = t->be;
    const ModelConfig *c = t->cfg;
    ModelWeights *gw = b->step->weight_grad;
    int n = b->p->n, D = c->dim;
    TRY(bwd_alloc(b));
    TRY(be->rmsnorm_backward(b->dx, b->dx16, gw ? gw->final_norm : NULL, a->dx_final, a->x_final, t->w.final_norm, n, D, c->norm_eps,
                             c->norm_plus_one));
    TRY(grads_final(b, c->n_layers));
    for (int l = c->n_layers - 1; l >= 0; l--) TRY(block_backward(b, l, &a->layers[l]));
    if (gw) TRY(be->embedding_backward((float *)gw->embed.data, b->dx, b->p->tokens, n, D, c->embed_scale ? sqrtf((float)D) : 1.0f));
    return grads_final(b, -1);
}

int transformer_backward(const Transformer *t, const TokenPlan *p, const Activations *a, const TrainStep *step) {
    Bwd b = {.t = t, .p = p, .step = step};
    int rc = run_backward(&b, a);
    bwd_free(&b);
    return rc;
}

int transformer_loss(const Transformer *t, const TokenPlan *p, const int *targets, const TrainStep *step, float *loss, int *n_counted) {
    if (step && step->weight_grad && !t->be->weight_grads) {
        ld_set_error("full fine-tuning (every weight's gradient) runs on the CPU backend, not on %s", t->be->name);
        return -1;
    }
    Activations *a = NULL;
    int rc = transformer_forward_loss(t, p, targets, step, step ? &a : NULL, loss, n_counted);
    if (!rc && step) rc = transformer_backward(t, p, a, step);
    activations_free(t, a);
    return rc;
}
