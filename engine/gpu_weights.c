#include "gpu_weights.h"

#ifdef LLAMADUO_HAVE_CUDA
#include <stdlib.h>
#include <string.h>

#include "kernels_cuda.h"
#include "util.h"

static float *upload_floats(const float *h, size_t n, int *err) {
    if (!h || *err) return NULL;
    float *d = kc_alloc(sizeof(float) * (n ? n : 1));
    if (!d || kc_upload(d, h, sizeof(float) * n)) *err = 1;
    return d;
}

// One matrix in precision wt, converted a block of rows at a time (the host never holds a whole fp32 copy of
// a large embedding table).
static Linear upload_linear(const Linear *w, int rows, int cols, LdDtype wt, int *err) {
    if (*err) return (Linear){0};
    size_t esz = wt == LD_BF16 ? 2 : 4, row_bytes = ld_dtype_nbytes(w->type, (uint64_t)cols);
    char *d = kc_alloc(esz * (size_t)rows * cols);
    if (!d) return *err = 1, (Linear){0};
    int block = 256;
    float *f = ld_xmalloc(sizeof(float) * (size_t)block * cols);
    uint16_t *h = wt == LD_BF16 ? ld_xmalloc(sizeof(uint16_t) * (size_t)block * cols) : NULL;
    for (int r0 = 0; r0 < rows && !*err; r0 += block) {
        int n = rows - r0 < block ? rows - r0 : block;
        size_t ne = (size_t)n * cols;
        ld_dequantize(w->type, (const char *)w->data + (size_t)r0 * row_bytes, f, ne);
        if (h)
            for (size_t i = 0; i < ne; i++) h[i] = ld_f32_to_bf16(f[i]);
        if (kc_upload(d + esz * (size_t)r0 * cols, h ? (void *)h : (void *)f, esz * ne)) *err = 1;
    }
    free(f), free(h);
    return (Linear){d, wt, esz * (size_t)cols};
}

static void upload_layer(const LayerWeights *w, LayerWeights *d, const ModelConfig *c, LdDtype wt, int *err) {
    int D = c->dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, F = c->ffn_dim;
    d->attn_norm = upload_floats(w->attn_norm, D, err), d->ffn_norm = upload_floats(w->ffn_norm, D, err);
    d->post_attn_norm = upload_floats(w->post_attn_norm, D, err), d->post_ffn_norm = upload_floats(w->post_ffn_norm, D, err);
    d->q_norm = upload_floats(w->q_norm, hd, err), d->k_norm = upload_floats(w->k_norm, hd, err);
    d->bq = upload_floats(w->bq, qd, err), d->bk = upload_floats(w->bk, kvd, err);
    d->bv = upload_floats(w->bv, kvd, err), d->bo = upload_floats(w->bo, D, err);
    d->wq = upload_linear(&w->wq, qd, D, wt, err), d->wk = upload_linear(&w->wk, kvd, D, wt, err);
    d->wv = upload_linear(&w->wv, kvd, D, wt, err), d->wo = upload_linear(&w->wo, D, qd, wt, err);
    d->w_gate = upload_linear(&w->w_gate, F, D, wt, err), d->w_up = upload_linear(&w->w_up, F, D, wt, err);
    d->w_down = upload_linear(&w->w_down, D, F, wt, err);
}

GpuWeights *gpu_weights_upload(const Model *m, LdDtype wt) {
    const ModelConfig *c = &m->cfg;
    int D = c->dim, hd = c->head_dim, V = c->vocab, err = 0;
    GpuWeights *g = ld_xcalloc(1, sizeof *g);
    ModelWeights *w = &g->w;
    g->n_layers = c->n_layers, g->wt = wt;
    w->embed = upload_linear(&m->embed, V, D, wt, &err);
    w->lm_head = c->tied_embeddings ? w->embed : upload_linear(&m->lm_head, V, D, wt, &err);
    w->final_norm = upload_floats(m->final_norm, D, &err);
    w->inv_freq_global = upload_floats(m->inv_freq_global, hd / 2, &err);
    w->inv_freq_local = upload_floats(m->inv_freq_local, hd / 2, &err);
    w->layers = ld_xcalloc((size_t)c->n_layers, sizeof(LayerWeights));
    for (int l = 0; l < c->n_layers && !err; l++) upload_layer(&m->layers[l], &w->layers[l], c, wt, &err);
    if (err) {
        ld_set_error("uploading the model to the GPU: %s", kc_last_error());
        gpu_weights_free(g);
        return NULL;
    }
    return g;
}

void gpu_weights_free(GpuWeights *g) {
    if (!g) return;
    ModelWeights *w = &g->w;
    if (w->lm_head.data != w->embed.data) kc_free((void *)w->lm_head.data);
    kc_free((void *)w->embed.data), kc_free(w->final_norm), kc_free((void *)w->inv_freq_global), kc_free((void *)w->inv_freq_local);
    for (int l = 0; w->layers && l < g->n_layers; l++) {
        LayerWeights *d = &w->layers[l];
        const void *all[] = {d->attn_norm, d->wq.data,     d->wk.data,   d->wv.data,     d->wo.data,      d->bq,
                             d->bk,        d->bv,          d->bo,        d->q_norm,      d->k_norm,       d->post_attn_norm,
                             d->ffn_norm,  d->w_gate.data, d->w_up.data, d->w_down.data, d->post_ffn_norm};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kc_free((void *)all[i]);
    }
    free(w->layers), free(g);
}

// like's rank, scale and shapes, no matrices yet
static Lora *lora_shell(const Lora *like) {
    Lora *v = ld_xcalloc(1, sizeof *v);
    *v = *like;
    v->data = NULL;
    v->w = ld_xcalloc((size_t)like->n_layers * LT_COUNT, sizeof(LoraPair));
    for (int i = 0; i < like->n_layers * LT_COUNT; i++) v->w[i] = (LoraPair){.in = like->w[i].in, .out = like->w[i].out};
    return v;
}

// one copy: the host adapter's matrices lie in lora_place's order, as the device's will
Lora *gpu_lora_upload(const Lora *like) {
    Lora *d = lora_shell(like);
    size_t n = lora_floats(like);
    float *data = kc_alloc(sizeof(float) * (n ? n : 1));
    if (!data || kc_upload(data, like->data, sizeof(float) * n)) {
        ld_set_error("uploading the adapter to the GPU: %s", kc_last_error());
        kc_free(data), gpu_view_free(d, NULL);
        return NULL;
    }
    lora_place(d, data);
    return d;
}

void gpu_lora_free(Lora *d) {
    if (!d) return;
    kc_free(d->data);
    gpu_view_free(d, NULL);
}

Lora *gpu_lora_view(const Lora *like, float *arena) {
    Lora *v = lora_shell(like);
    lora_place(v, arena);
    return v;
}

Model *gpu_model_view(const Model *m, float *arena) {
    Model *v = ld_xcalloc(1, sizeof *v);
    v->cfg = m->cfg;  // (its layer_local stays m's)
    memcpy(v->hf_prefix, m->hf_prefix, sizeof v->hf_prefix);
    v->layers = ld_xcalloc((size_t)m->cfg.n_layers, sizeof(LayerWeights));
    ModelTensor *t;
    int n = model_tensors(v, &t);
    for (int i = 0; i < n; i++) {
        size_t numel = (size_t)(t[i].lin ? t[i].rows * t[i].cols : t[i].cols);  // (a vector has no rows)
        if (t[i].lin)
            *t[i].lin = (Linear){arena, LD_F32, sizeof(float) * (size_t)t[i].cols};
        else
            *t[i].vec = arena;
        arena += numel;
    }
    free(t);
    if (v->cfg.tied_embeddings) v->lm_head = v->embed;
    return v;
}

void gpu_view_free(Lora *lora_view, Model *model_view) {
    if (lora_view) free(lora_view->w), free(lora_view);
    if (model_view) free(model_view->layers), free(model_view);
}

#endif
