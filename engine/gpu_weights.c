#include "gpu_weights.h"

#ifdef LLAMADUO_HAVE_CUDA
#include <stdlib.h>

#include "kernels_cuda.h"
#include "util.h"

float *gpu_upload_floats(const float *h, size_t n, int *err) {
    if (!h || *err) return NULL;
    float *d = kc_alloc(sizeof(float) * (n ? n : 1));
    if (!d || kc_upload(d, h, sizeof(float) * n)) *err = 1;
    return d;
}

float *gpu_zeros(size_t n, int *err) {
    if (*err) return NULL;
    float *d = kc_alloc(sizeof(float) * (n ? n : 1));
    if (!d || kc_fill(d, 0, n)) *err = 1;
    return d;
}

// One matrix in precision wt, converted a block of rows at a time (the host never holds a whole fp32 copy of
// a large embedding table).
static void *upload_linear(const Linear *w, int rows, int cols, LdDtype wt, int *err) {
    if (*err) return NULL;
    size_t esz = wt == LD_BF16 ? 2 : 4, row_bytes = ld_dtype_nbytes(w->type, (uint64_t)cols);
    char *d = kc_alloc(esz * (size_t)rows * cols);
    if (!d) return *err = 1, NULL;
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
    return d;
}

GpuWeights *gpu_weights_upload(const Model *m, const Lora *adapter, LdDtype wt) {
    const ModelConfig *c = &m->cfg;
    int D = c->dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, F = c->ffn_dim, V = c->vocab, err = 0;
    GpuWeights *g = ld_xcalloc(1, sizeof *g);
    g->n_layers = c->n_layers, g->wt = wt;
    g->embed = upload_linear(&m->embed, V, D, wt, &err);
    g->lm_head = c->tied_embeddings ? g->embed : upload_linear(&m->lm_head, V, D, wt, &err);
    g->final_norm = gpu_upload_floats(m->final_norm, D, &err);
    g->inv_global = gpu_upload_floats(m->inv_freq_global, hd / 2, &err);
    g->inv_local = gpu_upload_floats(m->inv_freq_local, hd / 2, &err);
    g->layers = ld_xcalloc((size_t)c->n_layers, sizeof(GpuLayer));
    for (int l = 0; l < c->n_layers && !err; l++) {
        const LayerWeights *w = &m->layers[l];
        GpuLayer *d = &g->layers[l];
        d->attn_norm = gpu_upload_floats(w->attn_norm, D, &err), d->ffn_norm = gpu_upload_floats(w->ffn_norm, D, &err);
        d->post_attn_norm = gpu_upload_floats(w->post_attn_norm, D, &err), d->post_ffn_norm = gpu_upload_floats(w->post_ffn_norm, D, &err);
        d->q_norm = gpu_upload_floats(w->q_norm, hd, &err), d->k_norm = gpu_upload_floats(w->k_norm, hd, &err);
        d->bq = gpu_upload_floats(w->bq, qd, &err), d->bk = gpu_upload_floats(w->bk, kvd, &err);
        d->bv = gpu_upload_floats(w->bv, kvd, &err), d->bo = gpu_upload_floats(w->bo, D, &err);
        d->wq = upload_linear(&w->wq, qd, D, wt, &err), d->wk = upload_linear(&w->wk, kvd, D, wt, &err);
        d->wv = upload_linear(&w->wv, kvd, D, wt, &err), d->wo = upload_linear(&w->wo, D, qd, wt, &err);
        d->w_gate = upload_linear(&w->w_gate, F, D, wt, &err), d->w_up = upload_linear(&w->w_up, F, D, wt, &err);
        d->w_down = upload_linear(&w->w_down, D, F, wt, &err);
    }
    if (adapter && !err) {
        int n = c->n_layers * LT_COUNT;
        g->lora_A = ld_xcalloc((size_t)n, sizeof(float *)), g->lora_B = ld_xcalloc((size_t)n, sizeof(float *));
        g->lora_rank = adapter->rank, g->lora_scale = adapter->scale;
        for (int i = 0; i < n && !err; i++) {
            const LoraPair *p = &adapter->w[i];
            if (!p->A) continue;
            g->lora_A[i] = gpu_upload_floats(p->A, (size_t)adapter->rank * p->in, &err);
            g->lora_B[i] = gpu_upload_floats(p->B, (size_t)p->out * adapter->rank, &err);
        }
    }
    if (err) {
        ld_set_error("uploading the model to the GPU: %s", kc_last_error());
        gpu_weights_free(g);
        return NULL;
    }
    return g;
}

void gpu_weights_free(GpuWeights *g) {
    if (!g) return;
    if (g->lm_head != g->embed) kc_free(g->lm_head);
    kc_free(g->embed), kc_free(g->final_norm), kc_free(g->inv_global), kc_free(g->inv_local);
    for (int l = 0; g->layers && l < g->n_layers; l++) {
        GpuLayer *d = &g->layers[l];
        void *all[] = {d->attn_norm, d->wq, d->wk, d->wv, d->wo, d->bq, d->bk, d->bv, d->bo, d->q_norm, d->k_norm, d->post_attn_norm,
                       d->ffn_norm, d->w_gate, d->w_up, d->w_down, d->post_ffn_norm};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kc_free(all[i]);
    }
    for (int i = 0; g->lora_A && i < g->n_layers * LT_COUNT; i++) kc_free(g->lora_A[i]), kc_free(g->lora_B[i]);
    free(g->lora_A), free(g->lora_B), free(g->layers), free(g);
}
#endif
