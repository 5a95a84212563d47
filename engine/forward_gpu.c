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
void gpu_model_release(GpuModel *g, int slot) { (void)g, (void)slot; }
GpuKvStats gpu_model_kv_stats(const GpuModel *g) { return (void)g, (GpuKvStats){0}; }

#else

#include "cuda_device.h"
#include "gpu_weights.h"
#include "kernels_cuda.h"
#include "transformer.h"

// The KV cache in pages of KV_PAGE rows (every layer's keys and values of those rows): a sequence's position p is
// virtual row slot·ctx_pad + p, and its page is mapped to one of the pool's when the sequence first reaches it, so
// the cache holds the rows sequences use rather than n_slots × ctx. The pool grows (doubling, the pages copied into
// the larger one) when no page is free; a finished sequence's pages go back to the free list.
#define KV_PAGE_SHIFT 4
#define KV_PAGE (1 << KV_PAGE_SHIFT)

struct GpuModel {
    const Model *m;
    GpuWeights *w;
    Lora *adapter;  // the model's adapter on the device, or NULL
    int n_slots, ctx, ctx_pad;  // ctx_pad: ctx rounded up to whole pages, a slot's span of virtual rows
    KvSpace kv;  // the pool: [n_layers][cap_pages · KV_PAGE][Hkv*hd] keys and values, bf16 with bf16 weights
    int *pages, *d_pages;  // [n_slots · ctx_pad / KV_PAGE] virtual page → pool page (-1: none), host and device
    int dirty_lo, dirty_hi;  // the span of the host table changed since its upload (empty: lo >= hi)
    int *free_pages, n_free, cap_pages, max_pages;  // a stack of the pool's free pages
    float *logits;  // [n_logits, V]: the last forward's wanted rows when kept on the device
    int n_logits, cap_logits;  // rows held, rows allocated
};

// Bytes of one layer's keys (or values) in `pages` pages of the pool.
static size_t layer_bytes(const GpuModel *g, int pages) {
    const ModelConfig *c = &g->m->cfg;
    return (size_t)pages * KV_PAGE * c->n_kv_heads * c->head_dim * ld_dtype_nbytes(g->kv.cache.type, 1);
}

// Bytes of one page of the pool: every layer's keys and values of KV_PAGE rows.
static size_t page_bytes(const GpuModel *g) { return 2 * (size_t)g->m->cfg.n_layers * layer_bytes(g, 1); }

// The pool grown to at least `want` pages (at least doubled, at most max_pages): a new pool with the old pages
// copied at the same indices, layer by layer, the new ones free.
static int pool_grow(GpuModel *g, int want) {
    int L = g->m->cfg.n_layers, cap = g->cap_pages * 2 > want ? g->cap_pages * 2 : want;
    cap = cap > g->max_pages ? g->max_pages : cap;
    size_t old_b = layer_bytes(g, g->cap_pages), new_b = layer_bytes(g, cap);  // (a whole number of floats: KV_PAGE rows)
    char *k = kc_alloc(new_b * L), *v = kc_alloc(new_b * L), *ok = g->kv.cache.k, *ov = g->kv.cache.v;
    int rc = !k || !v;
    for (int l = 0; l < L && !rc && old_b; l++)
        rc = kc_copy((float *)(k + l * new_b), (const float *)(ok + l * old_b), old_b / sizeof(float)) ||
             kc_copy((float *)(v + l * new_b), (const float *)(ov + l * old_b), old_b / sizeof(float));
    if (rc) {
        ld_set_error("cannot grow the GPU KV cache to %d pages (%.2f GiB, %d positions of %d sequences at most): %s", cap,
                     (double)cap * page_bytes(g) / (1 << 30), g->ctx, g->n_slots, kc_last_error());
        kc_free(k), kc_free(v);
        return -1;
    }
    kc_free(g->kv.cache.k), kc_free(g->kv.cache.v);
    g->kv.cache.k = k, g->kv.cache.v = v, g->kv.rows = (size_t)cap * KV_PAGE;
    for (int p = cap - 1; p >= g->cap_pages; p--) g->free_pages[g->n_free++] = p;  // the lowest taken first
    g->cap_pages = cap;
    return 0;
}

static void set_page(GpuModel *g, int vp, int page) {
    g->pages[vp] = page;
    if (vp < g->dirty_lo) g->dirty_lo = vp;
    if (vp + 1 > g->dirty_hi) g->dirty_hi = vp + 1;
}

// Pages for the rows of n tokens at (slot, pos) that have none yet; the span of the table that changed uploaded
// (a step's new pages lie close together: one slot's, or a few slots' next pages).
static int map_pages(GpuModel *g, const int *slot, const int *pos, int n) {
    for (int i = 0; i < n; i++) {  // (a full pool doubles: it cannot be full at max_pages, which covers every position)
        int vp = (slot[i] * g->ctx_pad + pos[i]) >> KV_PAGE_SHIFT;
        if (g->pages[vp] >= 0) continue;
        if (!g->n_free && pool_grow(g, g->cap_pages + 1)) return -1;
        set_page(g, vp, g->free_pages[--g->n_free]);
    }
    if (g->dirty_lo < g->dirty_hi &&
        ld_backend_cuda.upload(g->d_pages + g->dirty_lo, g->pages + g->dirty_lo, sizeof(int) * (size_t)(g->dirty_hi - g->dirty_lo))) {
        ld_set_error("GPU KV cache page table: %s", kc_last_error());
        return -1;
    }
    g->dirty_lo = g->max_pages, g->dirty_hi = 0;
    return 0;
}

void gpu_model_release(GpuModel *g, int slot) {
    if (!g || slot < 0 || slot >= g->n_slots) return;
    int per = g->ctx_pad >> KV_PAGE_SHIFT, *row = g->pages + (size_t)slot * per;
    for (int i = 0; i < per; i++) {
        if (row[i] < 0) continue;
        g->free_pages[g->n_free++] = row[i];
        set_page(g, slot * per + i, -1);
    }
}

GpuKvStats gpu_model_kv_stats(const GpuModel *g) {
    return (GpuKvStats){g->cap_pages - g->n_free, g->cap_pages, g->max_pages, KV_PAGE, (double)g->cap_pages * page_bytes(g)};
}

GpuModel *gpu_model_new(const Model *m, int n_slots, int ctx, LdDtype wt) {
    if (ld_cuda_device_count() == 0) {
        ld_set_error("no CUDA device found");
        return NULL;
    }
    GpuModel *g = ld_xcalloc(1, sizeof *g);
    g->m = m, g->n_slots = n_slots, g->ctx = ctx, g->ctx_pad = (ctx + KV_PAGE - 1) / KV_PAGE * KV_PAGE;
    g->kv.cache = (KvRows){NULL, NULL, wt == LD_BF16 ? LD_BF16 : LD_F32, NULL, KV_PAGE_SHIFT};
    g->max_pages = n_slots * (g->ctx_pad >> KV_PAGE_SHIFT);
    g->pages = ld_xmalloc(sizeof(int) * (size_t)g->max_pages), g->free_pages = ld_xmalloc(sizeof(int) * (size_t)g->max_pages);
    for (int i = 0; i < g->max_pages; i++) g->pages[i] = -1;
    g->dirty_lo = 0, g->dirty_hi = g->max_pages;  // (the device's copy is not yet written)
    // a first pool of four pages a sequence (64 positions), grown as they fill
    int rc = !(g->w = gpu_weights_upload(m, wt)) || (m->adapter && !(g->adapter = gpu_lora_upload(m->adapter)));
    if (!rc && !(g->d_pages = ld_backend_cuda.alloc(sizeof(int) * (size_t)g->max_pages))) {
        ld_set_error("cannot allocate the GPU KV cache's page table: %s", kc_last_error());
        rc = 1;
    }
    g->kv.cache.pages = g->d_pages;
    if (rc || pool_grow(g, 4 * n_slots)) {
        gpu_model_free(g);
        return NULL;
    }
    return g;
}

void gpu_model_free(GpuModel *g) {
    if (!g) return;
    kc_free(g->kv.cache.k), kc_free(g->kv.cache.v), kc_free(g->logits), kc_free(g->d_pages);
    free(g->pages), free(g->free_pages);
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
    g->n_logits = 0;
    if (map_pages(g, slot, pos, n)) return -1;
    int *out_rows = ld_xmalloc(sizeof(int) * (size_t)(n ? n : 1)), n_out = 0;
    for (int i = 0; i < n; i++)
        if (!want || want[i]) out_rows[n_out++] = i;
    Transformer t = {.be = be, .cfg = c, .w = g->w->w, .adapter = g->adapter};
    TokenPlan plan = {0};
    int *d_out = be->alloc(sizeof(int) * (size_t)(n_out ? n_out : 1));
    int rc = !d_out || be->upload(d_out, out_rows, sizeof(int) * (size_t)n_out) || reserve_logits(g, n_out) ||
             token_plan_cached(be, c, tokens, slot, pos, n, g->ctx_pad, &plan) ||
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
