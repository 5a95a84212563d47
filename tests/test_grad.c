// Every backward kernel against central finite differences of its forward (the llama.cpp way): for a random
// input and a random projection R, d(Σ R·f(x))/dx from the backward pass equals the numerical derivative.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "test_util.h"

static float frand(void) { return (float)rand() / RAND_MAX * 2.0f - 1.0f; }
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
}

typedef void (*ForwardFn)(void *ctx, const float *x, float *y);

// Compares an analytic gradient g[n] of L(x) = Σ_i R_i y_i(x) with central differences.
static double check_grad(const char *name, ForwardFn f, void *ctx, float *x, size_t n, size_t ny, const float *R, const float *g) {
    float *y = malloc(sizeof(float) * ny);
    double worst = 0, num2 = 0, den2 = 0;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
        double lp = 0, lm = 0;
        x[i] = keep + h;
        f(ctx, x, y);
        for (size_t k = 0; k < ny; k++) lp += (double)R[k] * y[k];
        x[i] = keep - h;
        f(ctx, x, y);
        for (size_t k = 0; k < ny; k++) lm += (double)R[k] * y[k];
        x[i] = keep;
        double fd = (lp - lm) / (2 * h);
        num2 += (fd - g[i]) * (fd - g[i]);
        den2 += fd * fd;
    }
    worst = sqrt(num2 / (den2 > 0 ? den2 : 1));
    printf("%-28s ‖analytic − numeric‖/‖numeric‖ = %.2e\n", name, worst);
    CHECK(worst < 1e-3, "%s: gradient differs from finite differences (%.3e)", name, worst);
    free(y);
    return worst;
}

// ---- matmul: x and w
typedef struct {
    int T, K, N;
    const float *w, *x;
} MatCtx;
static void mm_x(void *c, const float *x, float *y) {
    MatCtx *m = c;
    k_matmul(y, x, m->w, NULL, m->T, m->K, m->N);
}
static void mm_w(void *c, const float *w, float *y) {
    MatCtx *m = c;
    k_matmul(y, m->x, w, NULL, m->T, m->K, m->N);
}

// ---- rmsnorm: x and w
typedef struct {
    int T, D, plus_one;
    const float *w, *x;
} NormCtx;
static void rn_x(void *c, const float *x, float *y) {
    NormCtx *m = c;
    k_rmsnorm(y, NULL, x, m->w, m->T, m->D, 1e-5f, m->plus_one);
}
static void rn_w(void *c, const float *w, float *y) {
    NormCtx *m = c;
    k_rmsnorm(y, NULL, m->x, w, m->T, m->D, 1e-5f, m->plus_one);
}

// ---- rope
typedef struct {
    int T, Hq, Hkv, hd;
    const int *pos;
    const float *inv;
} RopeCtx;
// x holds q[T, Hq, hd] then k[T, Hkv, hd]
static void rope_f(void *c, const float *x, float *y) {
    RopeCtx *r = c;
    size_t nq = (size_t)r->T * r->Hq * r->hd;
    memcpy(y, x, sizeof(float) * (nq + (size_t)r->T * r->Hkv * r->hd));
    k_rope(y, y + nq, r->pos, r->inv, r->T, r->Hq, r->Hkv, r->hd);
}

// ---- gated activations (through gate, then up)
typedef struct {
    size_t n;
    Activation act;
    int wrt_up;
    const float *other;
} ActCtx;
static void act_f(void *c, const float *x, float *y) {
    ActCtx *a = c;
    const float *g = a->wrt_up ? a->other : x, *u = a->wrt_up ? x : a->other;
    k_gated(a->act, y, NULL, g, u, a->n);
}

// ---- softcap
typedef struct {
    size_t n;
    float cap;
} CapCtx;
static void cap_f(void *c, const float *x, float *y) {
    CapCtx *a = c;
    memcpy(y, x, sizeof(float) * a->n);
    k_softcap(y, a->n, a->cap);
}

// ---- attention: q, k, v over two packed sequences (no attention across the boundary), window, soft-cap
typedef struct {
    int T, Hq, Hkv, hd, wrt;
    float scale, cap;
    const float *q, *k, *v;
    const int *lo, *hi;
} AttCtx;
static void att_f(void *c, const float *x, float *y) {
    AttCtx *a = c;
    const float *q = a->wrt == 0 ? x : a->q, *k = a->wrt == 1 ? x : a->k, *v = a->wrt == 2 ? x : a->v;
    k_attention(y, NULL, q, (KvRows){(void *)k, (void *)v, LD_F32, NULL, 0}, NULL, a->lo, a->hi, a->T, a->Hq, a->Hkv, a->hd, a->scale,
                a->cap);
}

// ---- cross-entropy (L = loss itself: R = [1])
typedef struct {
    int T, V;
    const int *tgt;
} CeCtx;
static void ce_f(void *c, const float *x, float *y) {
    CeCtx *e = c;
    y[0] = k_cross_entropy(NULL, x, e->tgt, e->T, e->V, -100, NULL);
}

// ---- the fused head + loss (chunked): L = its loss, with respect to x and to the head's weight
typedef struct {
    int T, D, V, chunk;
    float cap;
    const float *x, *w;
    const int *tgt;
} LceCtx;
static void lce_x(void *c, const float *x, float *y) {
    LceCtx *e = c;
    y[0] = k_linear_cross_entropy(NULL, NULL, x, e->w, LD_F32, e->tgt, e->T, e->D, e->V, e->cap, -100, e->chunk, 0, NULL);
}
static void lce_w(void *c, const float *w, float *y) {
    LceCtx *e = c;
    y[0] = k_linear_cross_entropy(NULL, NULL, e->x, w, LD_F32, e->tgt, e->T, e->D, e->V, e->cap, -100, e->chunk, 0, NULL);
}

// The unfused sequence the fused op replaces: full logits, soft-cap, cross-entropy, and back.
static float head_unfused(float *dx, float *dw, const float *x, const float *w, const int *tgt, int T, int D, int V, float cap) {
    float *lg = malloc(sizeof(float) * T * V), *dl = malloc(sizeof(float) * T * V);
    k_matmul(lg, x, w, NULL, T, D, V);
    if (cap > 0) k_softcap(lg, (size_t)T * V, cap);
    float loss = k_cross_entropy(dl, lg, tgt, T, V, -100, NULL);
    if (cap > 0) k_softcap_backward(dl, dl, lg, (size_t)T * V, cap);
    k_matmul_backward(dx, dw, NULL, dl, x, w, T, D, V);
    free(lg), free(dl);
    return loss;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

int main(void) {
    srand(3);
    {  // matmul
        int T = 5, K = 7, N = 6;
        float x[35], w[42], R[30], dx[35], dw[42] = {0}, db[6] = {0};
        fill(x, 35, 1), fill(w, 42, 1), fill(R, 30, 1);
        k_matmul_backward(dx, dw, db, R, x, w, T, K, N);
        MatCtx c = {T, K, N, w, x};
        check_grad("matmul dx", mm_x, &c, x, 35, 30, R, dx);
        check_grad("matmul dW", mm_w, &c, w, 42, 30, R, dw);
        float want_db = 0;
        for (int t = 0; t < T; t++) want_db += R[t * N + 2];
        CHECK(fabsf(db[2] - want_db) < 1e-5f, "matmul dbias");
    }
    for (int po = 0; po < 2; po++) {  // rmsnorm, Llama and Gemma
        int T = 3, D = 16;
        float x[48], w[16], R[48], dx[48], dw[16] = {0};
        fill(x, 48, 2), fill(w, 16, 1), fill(R, 48, 1);
        k_rmsnorm_backward(dx, NULL, dw, R, x, w, T, D, 1e-5f, po);
        NormCtx c = {T, D, po, w, x};
        check_grad(po ? "rmsnorm (1+w) dx" : "rmsnorm dx", rn_x, &c, x, 48, 48, R, dx);
        check_grad(po ? "rmsnorm (1+w) dw" : "rmsnorm dw", rn_w, &c, w, 16, 48, R, dw);
    }
    {  // rope
        int T = 4, Hq = 2, Hkv = 1, hd = 8, pos[4] = {0, 3, 17, 250};  // q: 64 values, k: 32
        float inv[4] = {1.0f, 0.1f, 0.01f, 0.001f}, x[96], R[96], g[96];
        fill(x, 96, 1), fill(R, 96, 1);
        memcpy(g, R, sizeof g);
        k_rope_backward(g, g + 64, NULL, NULL, pos, inv, T, Hq, Hkv, hd);
        RopeCtx c = {T, Hq, Hkv, hd, pos, inv};
        check_grad("rope (q and k)", rope_f, &c, x, 96, 96, R, g);
    }
    for (int act = ACT_SILU; act <= ACT_GELU_ERF; act++) {  // SwiGLU / GeGLU tanh / GeGLU erf
        static const char *names[][2] = {
            {"swiglu d gate", "swiglu d up"}, {"geglu tanh d gate", "geglu tanh d up"}, {"geglu erf d gate", "geglu erf d up"}};
        size_t n = 40;
        float gt[40], up[40], R[40], dg[40], du[40];
        fill(gt, n, 3), fill(up, n, 2), fill(R, n, 1);
        k_gated_backward((Activation)act, dg, du, NULL, NULL, R, gt, up, n);
        ActCtx cg = {n, (Activation)act, 0, up}, cu = {n, (Activation)act, 1, gt};
        check_grad(names[act][0], act_f, &cg, gt, n, n, R, dg);
        check_grad(names[act][1], act_f, &cu, up, n, n, R, du);
    }
    {  // softcap
        size_t n = 30;
        float x[30], y[30], R[30], dx[30];
        fill(x, n, 8), fill(R, n, 1);
        memcpy(y, x, sizeof y);
        k_softcap(y, n, 5.0f);
        k_softcap_backward(dx, R, y, n, 5.0f);
        CapCtx c = {n, 5.0f};
        check_grad("softcap", cap_f, &c, x, n, n, R, dx);
    }
    for (int variant = 0; variant < 2; variant++) {  // attention: plain; window + soft-cap; both with packing + GQA
        int T = 7, Hq = 4, Hkv = 2, hd = 6, W = variant ? 2 : 1000;
        // two packed records: tokens 0-3 and 4-6, causal, no attention across the boundary
        int lo[7], hi[7], start[7] = {0, 0, 0, 0, 4, 4, 4};
        for (int t = 0; t < T; t++) {
            hi[t] = t;
            lo[t] = t - W + 1 > start[t] ? t - W + 1 : start[t];
        }
        size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * Hkv * hd;
        float *q = malloc(4 * nq), *k = malloc(4 * nk), *v = malloc(4 * nk), *R = malloc(4 * nq), *dq = malloc(4 * nq);
        float *dk = calloc(nk, 4), *dv = calloc(nk, 4);
        fill(q, nq, 1.5f), fill(k, nk, 1.5f), fill(v, nk, 1), fill(R, nq, 1);
        float cap = variant ? 1.5f : 0.0f, scale = 0.4f;
        k_attention_backward(dq, dk, dv, NULL, R, q, k, v, lo, hi, T, Hq, Hkv, hd, scale, cap);
        AttCtx c = {T, Hq, Hkv, hd, 0, scale, cap, q, k, v, lo, hi};
        const char *names[2][3] = {{"attention dq", "attention dk", "attention dv"},
                                   {"attention dq (window, cap)", "attention dk (window, cap)", "attention dv (window, cap)"}};
        c.wrt = 0;
        check_grad(names[variant][0], att_f, &c, q, nq, nq, R, dq);
        c.wrt = 1;
        check_grad(names[variant][1], att_f, &c, k, nk, nq, R, dk);
        c.wrt = 2;
        check_grad(names[variant][2], att_f, &c, v, nk, nq, R, dv);
        free(q), free(k), free(v), free(R), free(dq), free(dk), free(dv);
    }
    {  // cross-entropy with an ignored row
        int T = 4, V = 9, tgt[4] = {3, -100, 0, 8};
        float x[36], d[36], one = 1.0f;
        fill(x, 36, 3);
        int n;
        k_cross_entropy(d, x, tgt, T, V, -100, &n);
        CHECK(n == 3, "cross-entropy counted %d rows", n);
        CeCtx c = {T, V, tgt};
        check_grad("cross-entropy", ce_f, &c, x, 36, 1, &one, d);
        for (int v = 0; v < V; v++) CHECK(d[V + v] == 0, "ignored row has gradient");
    }
    for (int variant = 0; variant < 3; variant++) {  // fused head + loss: chunk of 1 row, 2 rows with a soft-cap, all rows
        int T = 6, D = 5, V = 11, tgt[6] = {3, -100, 0, 10, -100, 7}, chunk = variant == 0 ? 1 : variant == 1 ? 2 : 64;
        float cap = variant == 1 ? 4.0f : 0.0f, x[30], w[55], dx[30], dw[55] = {0}, one = 1.0f;
        fill(x, 30, 2), fill(w, 55, 2);
        int n;
        float loss = k_linear_cross_entropy(dx, dw, x, w, LD_F32, tgt, T, D, V, cap, -100, chunk, 0, &n);
        CHECK(n == 4, "fused head counted %d rows", n);
        LceCtx c = {T, D, V, chunk, cap, x, w, tgt};
        const char *nx[3] = {"fused head+loss dx (chunk 1)", "fused head+loss dx (chunk 2, cap)", "fused head+loss dx (1 chunk)"};
        const char *nw[3] = {"fused head+loss dW (chunk 1)", "fused head+loss dW (chunk 2, cap)", "fused head+loss dW (1 chunk)"};
        check_grad(nx[variant], lce_x, &c, x, 30, 1, &one, dx);
        check_grad(nw[variant], lce_w, &c, w, 55, 1, &one, dw);
        for (int d = 0; d < D; d++) CHECK(dx[1 * D + d] == 0 && dx[4 * D + d] == 0, "ignored row has an input gradient");
        float ux[30], uw[55] = {0};
        float uloss = head_unfused(ux, uw, x, w, tgt, T, D, V, cap);
        double ex = rel_err(dx, ux, 30), ew = rel_err(dw, uw, 55);
        printf("fused vs unfused (variant %d): loss %.7f vs %.7f, dx %.1e, dW %.1e\n", variant, loss, uloss, ex, ew);
        CHECK(fabsf(loss - uloss) <= 1e-6f * fabsf(uloss) && ex < 1e-6 && ew < 1e-6, "fused head + loss differs from the unfused ops");
    }
    {  // a data-parallel split: two shares dividing by the whole's count add up to the whole's loss and gradients
        int T = 6, D = 5, V = 11, tgt[6] = {3, -100, 0, 10, -100, 7}, n, n1, n2;
        float x[30], w[55], dx[30], dw[55] = {0}, sx[30], sw[55] = {0};
        fill(x, 30, 4), fill(w, 55, 4);
        float whole = k_linear_cross_entropy(dx, dw, x, w, LD_F32, tgt, T, D, V, 0, -100, 2, 0, &n);
        float a = k_linear_cross_entropy(sx, sw, x, w, LD_F32, tgt, 2, D, V, 0, -100, 2, n, &n1);
        float b = k_linear_cross_entropy(sx + 2 * D, sw, x + 2 * D, w, LD_F32, tgt + 2, T - 2, D, V, 0, -100, 2, n, &n2);
        CHECK(n1 + n2 == n && fabsf(a + b - whole) <= 1e-6f * whole, "split shares: loss %g + %g != %g", a, b, whole);
        CHECK(rel_err(sx, dx, 30) < 1e-6 && rel_err(sw, dw, 55) < 1e-6, "split shares' gradients differ from the whole's");
    }
    {  // fused head + loss with every target ignored: zero loss, zero gradient, nothing multiplied
        int tgt[2] = {-100, -100}, n = -1;
        float x[6], w[12], dx[6];
        fill(x, 6, 1), fill(w, 12, 1), fill(dx, 6, 1);
        float loss = k_linear_cross_entropy(dx, NULL, x, w, LD_F32, tgt, 2, 3, 4, 0, -100, 8, 0, &n);
        CHECK(loss == 0 && n == 0, "all-ignored batch: loss %g, counted %d", loss, n);
        for (int i = 0; i < 6; i++) CHECK(dx[i] == 0, "all-ignored batch has an input gradient");
    }
    return test_finish("test_grad");
}
