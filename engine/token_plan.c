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

int token_plan_cached(const Backend *be, const ModelConfig *c, const int *tokens, const int *slot, const int *pos, int n, int ctx,
                      TokenPlan *out) {
    int W = c->sliding_window;
    int *lo_g = ld_xcalloc((size_t)(n ? n : 1), sizeof(int)), *lo_l = ld_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    int *row = ld_xmalloc(sizeof(int) * (size_t)(n ? n : 1)), *base = ld_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {  // a token sees its own sequence up to its position
        base[i] = slot[i] * ctx, row[i] = base[i] + pos[i];
        lo_l[i] = W && pos[i] - W + 1 > 0 ? pos[i] - W + 1 : 0;
    }
    *out = (TokenPlan){.n = n};
    int *host[] = {(int *)tokens, (int *)pos, lo_g, lo_l, (int *)pos, row, base};
    int **dst[] = {&out->tokens, &out->pos, &out->lo_global, &out->lo_local, &out->hi, &out->kv_row, &out->kv_base};
    int rc = plan_upload(be, out, host, dst, 7, n);
    free(lo_g), free(lo_l), free(row), free(base);
    return rc;
}

void token_plan_free(const Backend *be, TokenPlan *p) {
    int *all[] = {p->tokens, p->pos, p->lo_global, p->lo_local, p->hi, p->kv_row, p->kv_base};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->release(all[i]);
    *p = (TokenPlan){0};
}
