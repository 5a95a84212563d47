// Token plans (transformer.h): which keys each token of a call sees, computed on the host and put where the backend
// reads them.
#include <stdlib.h>

#include "transformer.h"
#include "util.h"

// Copies the host arrays into the backend; every field NULL on failure.
static int plan_upload(const Backend *be, TokenPlan *out, int **host, int **dst[], int count, int n) {
    for (int i = 0; i < count; i++) {
        *dst[i] = be->alloc(sizeof(int) * (size_t)(n ? n : 1));
        if (!*dst[i] || be->upload(*dst[i], host[i], sizeof(int) * (size_t)n)) {
            token_plan_free(be, out);
            return -1;
        }
    }
    return 0;
}

int token_plan_packed(const Backend *be, const ModelConfig *c, const TrainBatch *b, TokenPlan *out) {
    int T = b->T, W = c->sliding_window;
    int *lo_g = ld_xmalloc(sizeof(int) * (size_t)(T ? T : 1)), *lo_l = ld_xmalloc(sizeof(int) * (size_t)(T ? T : 1));
    int *hi = ld_xmalloc(sizeof(int) * (size_t)(T ? T : 1));
    for (int i = 0, rec = 0; i < T; i++) {  // causal within the token's record; the window on local layers
        while (rec + 1 < b->n_records && i >= b->starts[rec + 1]) rec++;
        int start = b->starts[rec];
        hi[i] = i, lo_g[i] = start;
        lo_l[i] = W && i - W + 1 > start ? i - W + 1 : start;
    }
    *out = (TokenPlan){.n = T};
    int *host[] = {(int *)b->tokens, (int *)b->positions, lo_g, lo_l, hi};
    int **dst[] = {&out->tokens, &out->pos, &out->lo_global, &out->lo_local, &out->hi};
    int rc = plan_upload(be, out, host, dst, 5, T);
    free(lo_g), free(lo_l), free(hi);
    return rc;
}

// The work, in (query, key) pairs, of serving tokens in tiles of 32 consecutive queries that share each key tile
// (a tile walks the union of its sequences' ranges; a tile's misalignment counted), against serving each alone. A
// prefill is a run of one sequence's tokens and tiles well; decode tokens of many sequences do not: a tile of them
// would score each key for 32 queries of which one sees it.
static int tiles_pay(const int *base, const int *lo, const int *hi, int n) {
    double tiled = 0, own = 0;
    for (int q0 = 0; q0 < n; q0 += 32)
        for (int i = q0; i < q0 + 32 && i < n; i++) {
            own += hi[i] - lo[i] + 1;
            if (i > q0 && base[i] == base[i - 1]) continue;  // each sequence of the tile once
            int a = lo[i], b = hi[i];
            for (int j = i + 1; j < q0 + 32 && j < n && base[j] == base[i]; j++) a = lo[j] < a ? lo[j] : a, b = hi[j] > b ? hi[j] : b;
            tiled += 32.0 * (b - a + 1 + 32);
        }
    // the tiled kernel shares a key tile's loads among 32 queries and scores 32 keys at once: it wins while it
    // scores at most this many times the pairs
    return tiled <= 8.0 * own;
}

// Runs shorter than this (decode steps, a prompt's last few tokens) are served token by token while they lead the call.
#define TILED_RUN_MIN 16

// Where the tiled part of the call starts: after the leading short runs (tokens of one sequence at consecutive
// positions), if tiles pay for the rest; else n.
static int single_prefix(const int *slot, const int *pos, const int *base, const int *lo, const int *hi, int n) {
    int split = 0;
    while (split < n) {
        int run = 1;
        while (split + run < n && slot[split + run] == slot[split] && pos[split + run] == pos[split + run - 1] + 1) run++;
        if (run >= TILED_RUN_MIN) break;
        split += run;
    }
    return split < n && tiles_pay(base + split, lo + split, hi + split, n - split) ? split : n;
}

int token_plan_cached(const Backend *be, const ModelConfig *c, const int *tokens, const int *slot, const int *pos, int n, int ctx,
                      TokenPlan *out) {
    int W = c->sliding_window;
    size_t sz = sizeof(int) * (size_t)(n ? n : 1);
    int *lo_g = ld_xmalloc(sz), *lo_l = ld_xmalloc(sz), *hi = ld_xmalloc(sz), *row = ld_xmalloc(sz), *base = ld_xmalloc(sz);
    for (int i = 0; i < n; i++) {  // a token sees its own sequence up to its position: rows of the whole cache
        base[i] = slot[i] * ctx, row[i] = base[i] + pos[i];
        lo_g[i] = base[i], hi[i] = row[i];
        lo_l[i] = base[i] + (W && pos[i] - W + 1 > 0 ? pos[i] - W + 1 : 0);
    }
    int split = single_prefix(slot, pos, base, lo_g, hi, n);
    for (int i = 0; i < split; i++) lo_g[i] -= base[i], lo_l[i] -= base[i], hi[i] -= base[i];  // token by token: from base
    *out = (TokenPlan){.n = n, .n_single = split};
    int *host[] = {(int *)tokens, (int *)pos, lo_g, lo_l, hi, row, base};
    int **dst[] = {&out->tokens, &out->pos, &out->lo_global, &out->lo_local, &out->hi, &out->kv_row, &out->kv_base};
    int rc = plan_upload(be, out, host, dst, split ? 7 : 6, n);
    free(lo_g), free(lo_l), free(hi), free(row), free(base);
    return rc;
}

void token_plan_free(const Backend *be, TokenPlan *p) {
    int *all[] = {p->tokens, p->pos, p->lo_global, p->lo_local, p->hi, p->kv_row, p->kv_base};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->release(all[i]);
    *p = (TokenPlan){0};
}
