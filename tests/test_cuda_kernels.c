// Every CUDA kernel against its CPU reference (kernels/cpu/), on fresh random inputs at several shapes — odd
// sizes, head_dim 64/128/256, GQA, windows, packed records, KV-cache layouts, soft-cap on and off — with every
// output poisoned (NaN) before each run, so an element a kernel forgets to write fails the comparison.
// fp32 paths: ‖gpu − cpu‖ / ‖cpu‖ under 1e-5; bf16 paths (bf16 weights and GEMM inputs, fp32 accumulation):
// under 1e-2 against the fp32 reference, and under 1e-5 against a reference fed the same bf16-rounded inputs
// (which shows the accumulation is fp32). ctest label `gpu`: exits 77 (skipped, with a message) without a GPU.
#define _POSIX_C_SOURCE 200809L  // setenv
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_device.h"
#include "kernels.h"
#include "kernels_cuda.h"

static int g_fail, g_checks;
static unsigned long long g_rng = 0x243f6a8885a308d3ull;

static float frand(void) {  // uniform in [-1, 1)
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0) * 2 - 1;
}

static float *rnd(size_t n, float scale) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
    return x;
}

// x rounded to bf16 (round to nearest even), as bits for the device and as floats for references
static uint16_t *bf16_bits(const float *x, size_t n) {
    uint16_t *h = malloc(sizeof(uint16_t) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) h[i] = ld_f32_to_bf16(x[i]);
    return h;
}
static float *bf16_round(const float *x, size_t n) {
    float *r = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) r[i] = ld_bf16_to_f32(ld_f32_to_bf16(x[i]));
    return r;
}

static void *up(const void *h, size_t bytes) {
    void *d = kc_alloc(bytes);
    if (!d || kc_upload(d, h, bytes)) {
        fprintf(stderr, "device memory: %s\n", kc_last_error());
        exit(1);
    }
    return d;
}

static float *poisoned(size_t n) {  // a device buffer of NaN
    float *d = kc_alloc(sizeof(float) * (n ? n : 1));
    kc_fill(d, NAN, n);
    return d;
}

static float *down(const float *d, size_t n) {
    float *h = malloc(sizeof(float) * (n ? n : 1));
    if (kc_sync() || kc_download(h, d, sizeof(float) * n)) {
        fprintf(stderr, "%s\n", kc_last_error());
        exit(1);
    }
    return h;
}

static void compare(const char *what, const float *gpu, const float *cpu, size_t n, double bound) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)gpu[i] - cpu[i];
        num += d * d, den += (double)cpu[i] * cpu[i];
    }
    double err = sqrt(num / (den > 0 ? den : 1));  // NaN (an unwritten element) fails below
    g_checks++;
    if (!(err < bound)) {
        g_fail++;
        printf("FAIL %-58s rel err %.3e (bound %.0e)\n", what, err, bound);
    } else {
        printf("ok   %-58s rel err %.2e\n", what, err);
    }
}

static void check(int ok, const char *what) {
    g_checks++;
    if (!ok) g_fail++;
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
}

static void check_rc(int rc, const char *what) {
    if (rc) {
        printf("FAIL %s: %s\n", what, kc_last_error());
        g_fail++;
    }
}

// An op's bf16 output y16 beside its fp32 y (n values on the device): every value is y's rounded to nearest even,
// bit for bit (what a conversion pass of its own would have written), and near the CPU reference's (ref16).
static void check_rounded(const char *what, const uint16_t *dev16, const float *dev, const uint16_t *ref16, size_t n) {
    uint16_t *g16 = malloc(sizeof(uint16_t) * (n ? n : 1));
    float *g = down(dev, n), *gf = malloc(sizeof(float) * (n ? n : 1)), *rf = malloc(sizeof(float) * (n ? n : 1));
    check_rc(kc_sync() || kc_download(g16, dev16, sizeof(uint16_t) * n), what);
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) {
        wrong += g16[i] != ld_f32_to_bf16(g[i]) && !(isnan(g[i]) && isnan(ld_bf16_to_f32(g16[i])));
        gf[i] = ld_bf16_to_f32(g16[i]), rf[i] = ld_bf16_to_f32(ref16[i]);
    }
    char name[160];
    snprintf(name, sizeof name, "%s: bf16 output = fp32 output rounded (%zu of %zu differ)", what, wrong, n);
    check(wrong == 0, name);
    snprintf(name, sizeof name, "%s: bf16 output vs CPU's", what);
    compare(name, gf, rf, n, 1e-2);
    free(g16), free(g), free(gf), free(rf);
}

static void test_rmsnorm(int T, int D, int plus_one) {
    char name[96];
    float *x = rnd((size_t)T * D, 2), *w = rnd(D, 1), *dy = rnd((size_t)T * D, 1), *ref = malloc(sizeof(float) * T * D);
    float *refdx = malloc(sizeof(float) * T * D), *refdw = calloc(D, sizeof(float));
    uint16_t *ref16 = malloc(sizeof(uint16_t) * T * D), *dy16 = kc_alloc(sizeof(uint16_t) * T * D);
    uint16_t *refdx16 = malloc(sizeof(uint16_t) * T * D), *ddx16 = kc_alloc(sizeof(uint16_t) * T * D);
    k_rmsnorm(ref, ref16, x, w, T, D, 1e-6f, plus_one);
    k_rmsnorm_backward(refdx, refdx16, refdw, dy, x, w, T, D, 1e-6f, plus_one);
    float *dx_ = up(x, sizeof(float) * T * D), *dw_ = up(w, sizeof(float) * D), *ddy = up(dy, sizeof(float) * T * D);
    float *dy_out = poisoned((size_t)T * D), *ddx = poisoned((size_t)T * D), *ddw = kc_alloc(sizeof(float) * D);
    kc_fill(ddw, 0, D);
    check_rc(kc_rmsnorm(dy_out, dy16, dx_, dw_, T, D, 1e-6f, plus_one), "rmsnorm");
    check_rc(kc_rmsnorm_backward(ddx, ddx16, ddw, ddy, dx_, dw_, T, D, 1e-6f, plus_one), "rmsnorm_backward");
    float *g = down(dy_out, (size_t)T * D), *gdx = down(ddx, (size_t)T * D), *gdw = down(ddw, D);
    snprintf(name, sizeof name, "rmsnorm%s [%d x %d]", plus_one ? " (1+w)" : "", T, D);
    compare(name, g, ref, (size_t)T * D, 1e-5);
    check_rounded(name, dy16, dy_out, ref16, (size_t)T * D);
    snprintf(name, sizeof name, "rmsnorm%s backward dx [%d x %d]", plus_one ? " (1+w)" : "", T, D);
    compare(name, gdx, refdx, (size_t)T * D, 1e-5);
    check_rounded(name, ddx16, ddx, refdx16, (size_t)T * D);
    snprintf(name, sizeof name, "rmsnorm%s backward dw [%d x %d]", plus_one ? " (1+w)" : "", T, D);
    compare(name, gdw, refdw, D, 1e-5);
    free(x), free(w), free(dy), free(ref), free(ref16), free(refdx), free(refdx16), free(refdw), free(g), free(gdx), free(gdw);
    kc_free(dx_), kc_free(dw_), kc_free(ddy), kc_free(dy_out), kc_free(dy16), kc_free(ddx), kc_free(ddx16), kc_free(ddw);
}

// the residual add fused with the norm, y written over d as the forward pass does
static void test_add_rmsnorm(int T, int D, int plus_one) {
    float *x = rnd((size_t)T * D, 2), *d = rnd((size_t)T * D, 1), *w = rnd(D, 1), *ry = malloc(sizeof(float) * T * D),
          *rx = malloc(sizeof(float) * T * D);
    memcpy(rx, x, sizeof(float) * T * D);
    uint16_t *ry16 = malloc(sizeof(uint16_t) * T * D), *gy16 = kc_alloc(sizeof(uint16_t) * T * D);
    k_add_rmsnorm(ry, ry16, rx, d, w, T, D, 1e-6f, plus_one);
    float *gx = up(x, sizeof(float) * T * D), *gd = up(d, sizeof(float) * T * D), *gw = up(w, sizeof(float) * D);
    check_rc(kc_add_rmsnorm(gd, gy16, gx, gd, gw, T, D, 1e-6f, plus_one), "add_rmsnorm");
    float *hy = down(gd, (size_t)T * D), *hx = down(gx, (size_t)T * D);
    char name[96];
    snprintf(name, sizeof name, "add + rmsnorm y%s [%d x %d]", plus_one ? " (1+w)" : "", T, D);
    compare(name, hy, ry, (size_t)T * D, 1e-5);
    check_rounded(name, gy16, gd, ry16, (size_t)T * D);
    snprintf(name, sizeof name, "add + rmsnorm residual%s [%d x %d]", plus_one ? " (1+w)" : "", T, D);
    compare(name, hx, rx, (size_t)T * D, 1e-6);
    free(x), free(d), free(w), free(ry), free(ry16), free(rx), free(hy), free(hx);
    kc_free(gx), kc_free(gd), kc_free(gw), kc_free(gy16);
}

// q[T, Hq, hd] and k[T, Hkv, hd] rotated by one call: end to end in x on the host (the reference), apart on the
// device (as the model holds them), so a kernel that found k from q's end would fail
static void test_rope(int T, int Hq, int Hkv, int hd) {
    char name[96];
    size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * Hkv * hd, n = nq + nk;
    float *x = rnd(n, 1), *inv = malloc(sizeof(float) * hd / 2), *ref = malloc(sizeof(float) * n), *refb = malloc(sizeof(float) * n);
    int *pos = malloc(sizeof(int) * T);
    for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(10000.0f, 2.0f * i / hd);
    for (int t = 0; t < T; t++) pos[t] = (t * 37 + 5) % 3000;
    memcpy(ref, x, sizeof(float) * n), memcpy(refb, x, sizeof(float) * n);
    k_rope(ref, ref + nq, pos, inv, T, Hq, Hkv, hd);
    uint16_t *refb16 = malloc(sizeof(uint16_t) * n), *gbq16 = kc_alloc(sizeof(uint16_t) * nq), *gbk16 = kc_alloc(sizeof(uint16_t) * nk);
    k_rope_backward(refb, refb + nq, refb16, refb16 + nq, pos, inv, T, Hq, Hkv, hd);
    float *dq = up(x, sizeof(float) * nq), *dk = up(x + nq, sizeof(float) * nk), *dbq = up(x, sizeof(float) * nq);
    float *dbk = up(x + nq, sizeof(float) * nk), *dinv = up(inv, sizeof(float) * hd / 2);
    int *dpos = up(pos, sizeof(int) * T);
    check_rc(kc_rope(dq, dk, dpos, dinv, T, Hq, Hkv, hd), "rope");
    check_rc(kc_rope_backward(dbq, dbk, gbq16, gbk16, dpos, dinv, T, Hq, Hkv, hd), "rope_backward");
    float *g = malloc(sizeof(float) * n), *gb = malloc(sizeof(float) * n);  // q then k, as the reference lies
    check_rc(kc_sync() || kc_download(g, dq, sizeof(float) * nq) || kc_download(g + nq, dk, sizeof(float) * nk) ||
                 kc_download(gb, dbq, sizeof(float) * nq) || kc_download(gb + nq, dbk, sizeof(float) * nk),
             "rope download");
    snprintf(name, sizeof name, "rope [%d tokens, %d+%d heads, hd %d]", T, Hq, Hkv, hd);
    compare(name, g, ref, n, 1e-5);
    snprintf(name, sizeof name, "rope backward [%d tokens, %d+%d heads, hd %d]", T, Hq, Hkv, hd);
    compare(name, gb, refb, n, 1e-5);
    snprintf(name, sizeof name, "rope backward dq [%d tokens, %d heads, hd %d]", T, Hq, hd);
    check_rounded(name, gbq16, dbq, refb16, nq);
    snprintf(name, sizeof name, "rope backward dk [%d tokens, %d heads, hd %d]", T, Hkv, hd);
    check_rounded(name, gbk16, dbk, refb16 + nq, nk);
    free(x), free(inv), free(ref), free(refb), free(refb16), free(pos), free(g), free(gb);
    kc_free(dq), kc_free(dk), kc_free(dbq), kc_free(dbk), kc_free(gbq16), kc_free(gbk16), kc_free(dinv), kc_free(dpos);
}

// RoPE fused with the KV cache's writes, T tokens into rows through a page table (reversed, so a kernel that
// skipped it would write elsewhere), fp32 and bf16 cache: q rotated in place, the cache's keys and values against the
// CPU's (rope then the writes), k left alone, and one token's row found by hand.
static void test_rope_kv_write(int T, int Hq, int Hkv, int hd, int bf16) {
    char name[128];
    int width = Hkv * hd, n_pages = (T + 15) / 16 + 1, *table = malloc(sizeof(int) * n_pages), *pos = malloc(sizeof(int) * T),
        *rows = malloc(sizeof(int) * T);
    size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * width, eb = bf16 ? 2 : 4, cells = (size_t)n_pages * 16 * width;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *inv = malloc(sizeof(float) * hd / 2), *rq = malloc(sizeof(float) * nq);
    for (int p = 0; p < n_pages; p++) table[p] = n_pages - 1 - p;
    for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(10000.0f, 2.0f * i / hd);
    for (int t = 0; t < T; t++) pos[t] = (t * 37 + 5) % 3000, rows[t] = (t * 7 + 3) % (n_pages * 16);
    memcpy(rq, q, sizeof(float) * nq);
    void *ck = calloc(cells, eb), *cv = calloc(cells, eb), *hk = malloc(cells * eb), *hv = malloc(cells * eb);
    k_rope_kv_write((KvRows){ck, cv, bf16 ? LD_BF16 : LD_F32, table, 4}, rq, k, v, rows, pos, inv, T, Hq, Hkv, hd);
    float *gq = up(q, sizeof(float) * nq), *gk = up(k, sizeof(float) * nk), *gv = up(v, sizeof(float) * nk),
          *ginv = up(inv, sizeof(float) * hd / 2);
    int *gtable = up(table, sizeof(int) * n_pages), *gpos = up(pos, sizeof(int) * T), *grows = up(rows, sizeof(int) * T);
    void *gck = kc_alloc(cells * eb), *gcv = kc_alloc(cells * eb);
    kc_fill(gck, 0, cells * eb / 4), kc_fill(gcv, 0, cells * eb / 4);
    check_rc(kc_rope_kv_write((KvRows){gck, gcv, bf16 ? LD_BF16 : LD_F32, gtable, 4}, gq, gk, gv, grows, gpos, ginv, T, Hq, Hkv, hd),
             "rope_kv_write");
    check_rc(kc_download(hk, gck, cells * eb) || kc_download(hv, gcv, cells * eb), "rope_kv_write download");
    float *hq = down(gq, nq), *hk_in = down(gk, nk), *fk = malloc(sizeof(float) * cells), *fck = malloc(sizeof(float) * cells);
    for (size_t i = 0; i < cells; i++)
        fk[i] = bf16 ? ld_bf16_to_f32(((uint16_t *)hk)[i]) : ((float *)hk)[i],
        fck[i] = bf16 ? ld_bf16_to_f32(((uint16_t *)ck)[i]) : ((float *)ck)[i];
    const char *p = bf16 ? "bf16" : "fp32";
    snprintf(name, sizeof name, "rope_kv_write q [%d tokens, %d+%d heads, hd %d]", T, Hq, Hkv, hd);
    compare(name, hq, rq, nq, 1e-5);
    snprintf(name, sizeof name, "rope_kv_write %s cache keys [%d tokens, %d+%d heads, hd %d]", p, T, Hq, Hkv, hd);
    compare(name, fk, fck, cells, bf16 ? 1e-2 : 1e-5);
    size_t r = (size_t)table[rows[T - 1] >> 4] * 16 + (rows[T - 1] & 15);  // the last token's row, found by hand
    float v1 = bf16 ? ld_bf16_to_f32(((uint16_t *)hv)[r * width + 1]) : ((float *)hv)[r * width + 1];
    snprintf(name, sizeof name, "rope_kv_write %s cache values = the CPU's, bit for bit; k left alone [%d tokens]", p, T);
    check(!memcmp(hv, cv, cells * eb) &&
              v1 == (bf16 ? ld_bf16_to_f32(ld_f32_to_bf16(v[(size_t)(T - 1) * width + 1])) : v[(size_t)(T - 1) * width + 1]) &&
              !memcmp(hk_in, k, sizeof(float) * nk),
          name);
    free(table), free(pos), free(rows), free(q), free(k), free(v), free(inv), free(rq), free(ck), free(cv), free(hk), free(hv), free(hq),
        free(hk_in), free(fk), free(fck);
    kc_free(gq), kc_free(gk), kc_free(gv), kc_free(ginv), kc_free(gtable), kc_free(gpos), kc_free(grows), kc_free(gck), kc_free(gcv);
}

static void test_elementwise(size_t n) {
    char name[96];
    static const char *act_names[] = {"swiglu", "geglu (tanh)", "geglu (erf)"};
    float *g = rnd(n, 4), *u = rnd(n, 2), *dh = rnd(n, 1);
    float *h = malloc(sizeof(float) * n), *dg = malloc(sizeof(float) * n), *du = malloc(sizeof(float) * n);
    float *dgate = up(g, sizeof(float) * n), *dup_ = up(u, sizeof(float) * n), *ddh = up(dh, sizeof(float) * n);
    for (int act = ACT_SILU; act <= ACT_GELU_ERF; act++) {
        uint16_t *h16 = malloc(sizeof(uint16_t) * n), *o16 = kc_alloc(sizeof(uint16_t) * n);
        k_gated((Activation)act, h, h16, g, u, n);
        uint16_t *dg16 = malloc(sizeof(uint16_t) * n), *du16 = malloc(sizeof(uint16_t) * n);
        uint16_t *a16 = kc_alloc(sizeof(uint16_t) * n), *b16 = kc_alloc(sizeof(uint16_t) * n);
        k_gated_backward((Activation)act, dg, du, dg16, du16, dh, g, u, n);
        float *o = poisoned(n), *a = poisoned(n), *b = poisoned(n);
        check_rc(kc_gated((Activation)act, o, o16, dgate, dup_, n), act_names[act]);
        snprintf(name, sizeof name, "%s [%zu]", act_names[act], n);
        check_rounded(name, o16, o, h16, n);
        free(h16), kc_free(o16);
        check_rc(kc_gated_backward((Activation)act, a, b, a16, b16, ddh, dgate, dup_, n), act_names[act]);
        snprintf(name, sizeof name, "%s backward dgate [%zu]", act_names[act], n);
        check_rounded(name, a16, a, dg16, n);
        snprintf(name, sizeof name, "%s backward dup [%zu]", act_names[act], n);
        check_rounded(name, b16, b, du16, n);
        free(dg16), free(du16), kc_free(a16), kc_free(b16);
        struct {
            const char *what;
            float *dev, *ref;
        } outs[] = {{"", o, h}, {" backward dgate", a, dg}, {" backward dup", b, du}};
        for (int i = 0; i < 3; i++) {
            float *got = down(outs[i].dev, n);
            snprintf(name, sizeof name, "%s%s [%zu]", act_names[act], outs[i].what, n);
            compare(name, got, outs[i].ref, n, 1e-5);
            free(got);
            kc_free(outs[i].dev);
        }
    }
    float *sc = malloc(sizeof(float) * n), *dsc_in = up(g, sizeof(float) * n);
    memcpy(sc, g, sizeof(float) * n);
    k_softcap(sc, n, 3.0f);
    check_rc(kc_softcap(dsc_in, n, 3.0f), "softcap");
    float *got = down(dsc_in, n);
    snprintf(name, sizeof name, "softcap 3 [%zu]", n);
    compare(name, got, sc, n, 1e-5);
    free(got), free(g), free(u), free(dh), free(h), free(dg), free(du), free(sc);
    kc_free(dsc_in), kc_free(dgate), kc_free(dup_), kc_free(ddh);
}

// fp32 -> bf16 -> fp32 on the device equals dtype.h's rounding, bit for bit (NaN and infinities included)
static void test_bf16_convert(size_t n) {
    float *x = rnd(n, 1000), *back = malloc(sizeof(float) * n);
    x[0] = NAN, x[n > 1 ? 1 : 0] = INFINITY;
    uint16_t *want = bf16_bits(x, n);
    float *dx = up(x, sizeof(float) * n), *dback = poisoned(n);
    void *d16 = kc_alloc(2 * n);
    check_rc(kc_to_bf16(d16, dx, n), "to_bf16"), check_rc(kc_from_bf16(dback, d16, n), "from_bf16");
    uint16_t *got = malloc(2 * n);
    kc_sync(), kc_download(got, d16, 2 * n), kc_download(back, dback, sizeof(float) * n);
    int same = !memcmp(got, want, 2 * n);
    for (size_t i = 0; i < n && same; i++) {
        float w = ld_bf16_to_f32(want[i]);
        same = memcmp(&back[i], &w, 4) == 0;
    }
    g_checks++;
    printf("%s bf16 round trip [%zu values]: %s dtype.h's rounding\n", same ? "ok  " : "FAIL", n, same ? "equals" : "DIFFERS from");
    if (!same) g_fail++;
    free(x), free(back), free(want), free(got);
    kc_free(dx), kc_free(dback), kc_free(d16);
}

// Many buffers of different lengths in one call (more than one launch's KC_CONVERT_RUNS, an empty one among them):
// each converted as alone, bit for bit, and nothing past its end written.
static void test_bf16_convert_runs(void) {
    enum { COUNT = KC_CONVERT_RUNS + 3 };
    LdConvertRun to[COUNT], from[COUNT];
    float *x[COUNT];
    size_t len[COUNT];
    for (int i = 0; i < COUNT; i++) {
        len[i] = i == 5 ? 0 : 1 + (size_t)(i * 7919) % 70001;
        x[i] = rnd(len[i] + 1, 100);
        to[i] = (LdConvertRun){kc_alloc(2 * (len[i] + 1)), up(x[i], sizeof(float) * (len[i] + 1)), len[i]};
        from[i] = (LdConvertRun){poisoned(len[i] + 1), to[i].dst, len[i]};
        uint16_t guard = 0x7fc1;  // a NaN that no conversion writes
        kc_upload((uint16_t *)to[i].dst + len[i], &guard, 2);
    }
    check_rc(kc_to_bf16_runs(to, COUNT), "to_bf16 runs"), check_rc(kc_from_bf16_runs(from, COUNT), "from_bf16 runs");
    kc_sync();
    int same = 1;
    for (int i = 0; i < COUNT; i++) {
        uint16_t *want = bf16_bits(x[i], len[i] + 1), *got = malloc(2 * (len[i] + 1));
        float *back = malloc(sizeof(float) * (len[i] + 1));
        kc_download(got, to[i].dst, 2 * (len[i] + 1)), kc_download(back, from[i].dst, sizeof(float) * (len[i] + 1));
        same &= !memcmp(got, want, 2 * len[i]) && got[len[i]] == 0x7fc1 && isnan(back[len[i]]);
        for (size_t j = 0; j < len[i] && same; j++) {
            float w = ld_bf16_to_f32(want[j]);
            same = memcmp(&back[j], &w, 4) == 0;
        }
        free(want), free(got), free(back), free(x[i]);
        kc_free(to[i].dst), kc_free((void *)to[i].src), kc_free(from[i].dst);
    }
    g_checks++;
    printf("%s bf16 round trip of %d buffers in one call: %s\n", same ? "ok  " : "FAIL", COUNT, same ? "each as alone" : "DIFFERS");
    if (!same) g_fail++;
}

static void test_adamw(size_t n) {
    float *p = rnd(n, 1), *m = rnd(n, 0.1f), *v = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(frand()) * 0.01f;
    float *dp = up(p, sizeof(float) * n), *dm = up(m, sizeof(float) * n), *dv = up(v, sizeof(float) * n);
    for (int step = 1; step <= 3; step++) {
        float *g = rnd(n, 1), *dg = up(g, sizeof(float) * n);
        k_adamw(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step);
        check_rc(kc_adamw(dp, dg, dm, dv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step), "adamw");
        free(g), kc_free(dg);
    }
    float *gp = down(dp, n), *gm = down(dm, n), *gv = down(dv, n);
    char name[96];
    snprintf(name, sizeof name, "adamw, 3 steps: parameters [%zu]", n);
    compare(name, gp, p, n, 1e-6);
    snprintf(name, sizeof name, "adamw, 3 steps: moments [%zu]", n);
    compare(name, gm, m, n, 1e-6);
    compare("adamw, 3 steps: second moments", gv, v, n, 1e-6);
    free(p), free(m), free(v), free(gp), free(gm), free(gv);
    kc_free(dp), kc_free(dm), kc_free(dv);
}

// kc_attention_packed asked for a bf16 output as well: on tensor cores where head_dim allows (else as without it),
// within bf16's error of the fp32 reference ref, its lse within 1e-3 of the fp32 kernel's, and its bf16 output the
// fp32 one rounded (and near ref16, where given).
static void check_attention_mma(const char *what, float *dout, uint16_t *dout16, const float *dq, KvRows dkv, const int *dlo, const int *dhi,
                                int T, int Hq, int Hkv, int hd, float scale, float softcap, const float *ref, const uint16_t *ref16) {
    size_t n = (size_t)T * Hq * hd;
    float *dlse = poisoned((size_t)T * Hq);
    check_rc(kc_attention_packed(dout, NULL, dlse, dq, dkv, dlo, dhi, T, Hq, Hkv, hd, scale, softcap), "attention_packed");
    float *ref_lse = down(dlse, (size_t)T * Hq);
    kc_fill(dout, NAN, n), kc_fill(dlse, NAN, (size_t)T * Hq);
    check_rc(kc_attention_packed(dout, dout16, dlse, dq, dkv, dlo, dhi, T, Hq, Hkv, hd, scale, softcap), "attention_packed, bf16 out");
    float *g = down(dout, n), *gl = down(dlse, (size_t)T * Hq);
    char name[160];
    snprintf(name, sizeof name, "%s, %s", what, kc_attention_packed_mma_fits(hd) ? "tensor cores" : "bf16 out");
    compare(name, g, ref, n, kc_attention_packed_mma_fits(hd) ? 1e-2 : 1e-5);
    if (ref16) check_rounded(name, dout16, dout, ref16, n);
    snprintf(name, sizeof name, "%s, %s: lse", what, kc_attention_packed_mma_fits(hd) ? "tensor cores" : "bf16 out");
    compare(name, gl, ref_lse, (size_t)T * Hq, 1e-3);
    free(g), free(gl), free(ref_lse), kc_free(dlse);
}

// layout 0: one packed training batch (records of the given length, causal within each);
// layout 1: a KV cache of several sequences, each token at the end of its own sequence's rows (decoding);
// layout 2: prefills of 37 tokens, each sequence in its own 100 rows of a KV cache (two in some query tiles), the
// rows past each sequence NaN;
// layout 3: decoding long sequences, each token at the end of its own 1,200 rows (700 to 1,150 keys): the key
// ranges split over many blocks (flash-decoding) when there are few tokens.
static void test_attention(int T, int Hq, int Hkv, int hd, int window, float softcap, int layout) {
    int rec = layout == 2 ? 37 : 7, rows = layout == 3 ? T * 1200 : layout ? T * 100 : T, stride = Hkv * hd;
    float *q = rnd((size_t)T * Hq * hd, 1), *k = rnd((size_t)rows * stride, 1), *v = rnd((size_t)rows * stride, 1);
    float *ref = malloc(sizeof(float) * T * Hq * hd);
    int *lo = malloc(sizeof(int) * T), *hi = malloc(sizeof(int) * T), *base = malloc(sizeof(int) * T);
    for (int t = 0; t < T; t++) {
        if (layout == 0) {  // causal within records of `rec` tokens, optional sliding window
            base[t] = 0, hi[t] = t, lo[t] = t / rec * rec;
        } else if (layout == 1) {  // sequence t lives in rows [40t, 40t+40); its newest token sees 1 + (t*13 % 39) of them
            base[t] = 40 * t, lo[t] = 0, hi[t] = (t * 13) % 39;
        } else if (layout == 3) {
            base[t] = 1200 * t, lo[t] = 0, hi[t] = 699 + (t * 37) % 450;
        } else {  // token t is at position t % rec of sequence t / rec, whose rows start at 100 (t / rec)
            base[t] = 100 * (t / rec), lo[t] = 0, hi[t] = t % rec;
        }
        if (window && hi[t] - window + 1 > lo[t]) lo[t] = hi[t] - window + 1;
    }
    if (layout == 2)  // the rows between sequences are no one's: NaN, which no result may take in
        for (int r = 0; r < rows; r++)
            if (r % 100 >= rec)
                for (int d = 0; d < stride; d++) k[(size_t)r * stride + d] = v[(size_t)r * stride + d] = NAN;
    float scale = 1.0f / sqrtf((float)hd);
    KvRows hkv = {k, v, LD_F32, NULL, 0};
    uint16_t *ref16 = malloc(sizeof(uint16_t) * T * Hq * hd), *dout16 = kc_alloc(sizeof(uint16_t) * T * Hq * hd);
    k_attention(ref, ref16, q, hkv, base, lo, hi, T, Hq, Hkv, hd, scale, softcap);
    float *dq = up(q, sizeof(float) * T * Hq * hd), *dk = up(k, sizeof(float) * rows * stride), *dv = up(v, sizeof(float) * rows * stride);
    int *dlo = up(lo, sizeof(int) * T), *dhi = up(hi, sizeof(int) * T), *dbase = up(base, sizeof(int) * T);
    float *dout = poisoned((size_t)T * Hq * hd);
    KvRows dkv = {dk, dv, LD_F32, NULL, 0};
    check_rc(kc_attention(dout, dout16, dq, dkv, dbase, dlo, dhi, T, Hq, Hkv, hd, scale, softcap), "attention");
    float *g = down(dout, (size_t)T * Hq * hd);
    char name[128];
    const char *const layouts[] = {"packed", "KV cache", "KV cache prefill", "KV cache, long"};
    snprintf(name, sizeof name, "attention %s T %d, %d/%d heads, hd %d%s%s", layouts[layout], T, Hq, Hkv, hd, window ? ", window" : "",
             softcap > 0 ? ", softcap" : "");
    compare(name, g, ref, (size_t)T * Hq * hd, 1e-5);
    check_rounded(name, dout16, dout, ref16, (size_t)T * Hq * hd);
    if (layout == 0 || layout == 2) {  // the tiled kernel on the same inputs, its ranges as rows of k/v
        for (int t = 0; t < T; t++) lo[t] += base[t], hi[t] += base[t];
        check_rc(kc_upload(dlo, lo, sizeof(int) * T) || kc_upload(dhi, hi, sizeof(int) * T), "attention ranges upload");
        kc_fill(dout, NAN, (size_t)T * Hq * hd);
        check_rc(kc_attention_packed(dout, NULL, NULL, dq, dkv, dlo, dhi, T, Hq, Hkv, hd, scale, softcap), "attention_packed");
        float *gp = down(dout, (size_t)T * Hq * hd);
        snprintf(name, sizeof name, "attention tiled %s T %d, %d/%d heads, hd %d%s%s", layouts[layout], T, Hq, Hkv, hd,
                 window ? ", window" : "", softcap > 0 ? ", softcap" : "");
        compare(name, gp, ref, (size_t)T * Hq * hd, 1e-5);
        free(gp);
        check_attention_mma(name, dout, dout16, dq, dkv, dlo, dhi, T, Hq, Hkv, hd, scale, softcap, ref, ref16);
    }
    free(q), free(k), free(v), free(ref), free(ref16), free(lo), free(hi), free(base), free(g);
    kc_free(dq), kc_free(dk), kc_free(dv), kc_free(dlo), kc_free(dhi), kc_free(dbase), kc_free(dout), kc_free(dout16);
}

// The tensor-core kernel where the scores climb along the keys (by about 10 a tile of 32 in every third query, so
// its output's rows get rescaled nearly every tile) or fall (its first max holds), in records of `rec` tokens.
static void test_attention_mma_sharp(int T, int rec, int Hq, int Hkv, int hd) {
    int stride = Hkv * hd;
    size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * stride;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *ref = malloc(sizeof(float) * nq);
    float scale = 1.0f / sqrtf((float)hd), rise = 10.0f / 32 / scale / 50;  // key j's first dim: j·rise
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < Hq; h++) q[((size_t)t * Hq + h) * hd] = t % 3 == 0 ? 50.0f : t % 3 == 1 ? -50.0f : 0.0f;
        for (int h = 0; h < Hkv; h++) k[(size_t)t * stride + h * hd] = (float)(t % rec) * rise;
    }
    float *in[] = {q, k, v};  // rounded to bf16 first, so that what differs is the kernel's own (scores this large
    size_t ns[] = {nq, nk, nk};  // would make bf16's rounding of q and k alone move the weights by percents)
    for (int b = 0; b < 3; b++)
        for (size_t i = 0; i < ns[b]; i++) in[b][i] = ld_bf16_to_f32(ld_f32_to_bf16(in[b][i]));
    int *lo = malloc(sizeof(int) * T), *hi = malloc(sizeof(int) * T), *base = calloc((size_t)T, sizeof(int));
    for (int t = 0; t < T; t++) hi[t] = t, lo[t] = t / rec * rec;
    k_attention(ref, NULL, q, (KvRows){k, v, LD_F32, NULL, 0}, base, lo, hi, T, Hq, Hkv, hd, scale, 0.0f);
    float *dq = up(q, sizeof(float) * nq), *dk = up(k, sizeof(float) * nk), *dv = up(v, sizeof(float) * nk), *dout = poisoned(nq);
    int *dlo = up(lo, sizeof(int) * T), *dhi = up(hi, sizeof(int) * T);
    uint16_t *dout16 = kc_alloc(sizeof(uint16_t) * nq);
    char name[128];
    snprintf(name, sizeof name, "attention tiled, climbing scores: T %d, records of %d, %d/%d heads, hd %d", T, rec, Hq, Hkv, hd);
    check_attention_mma(name, dout, dout16, dq, (KvRows){dk, dv, LD_F32, NULL, 0}, dlo, dhi, T, Hq, Hkv, hd, scale, 0.0f, ref, NULL);
    free(q), free(k), free(v), free(ref), free(lo), free(hi), free(base);
    kc_free(dq), kc_free(dk), kc_free(dv), kc_free(dout), kc_free(dlo), kc_free(dhi), kc_free(dout16);
}

// A paged KV cache of 16-row pages holding the same virtual rows as k and v [rows, stride]: the pages some token's
// range [base + lo, base + hi] touches mapped, in reverse order, to pool pages (the others -1); the rows no token
// sees NaN, which no result may take in. *pool_k and *pool_v (host, fp32) get the pool, the table is returned.
#define TEST_PAGE_SHIFT 4
static int *paged_copy(const float *k, const float *v, int rows, int stride, const int *base, const int *lo, const int *hi, int T,
                       float **pool_k, float **pool_v, int *n_table) {
    int P = 1 << TEST_PAGE_SHIFT, n = (rows + P - 1) / P, mapped = 0, *table = malloc(sizeof(int) * n);
    char *seen = calloc((size_t)rows, 1);
    for (int p = 0; p < n; p++) table[p] = -1;
    for (int t = 0; t < T; t++)
        for (int j = base[t] + lo[t]; j <= base[t] + hi[t]; j++) table[j / P] = 0, seen[j] = 1;
    for (int p = n - 1; p >= 0; p--)
        if (!table[p]) table[p] = ++mapped;  // (page 0 of the pool stays unused: NaN)
    size_t pool = (size_t)(mapped + 1) * P * stride;
    *pool_k = malloc(sizeof(float) * pool), *pool_v = malloc(sizeof(float) * pool);
    for (size_t i = 0; i < pool; i++) (*pool_k)[i] = (*pool_v)[i] = NAN;
    for (int j = 0; j < rows; j++) {
        long long r = kv_page_row(table, TEST_PAGE_SHIFT, j);
        if (!seen[j]) continue;
        memcpy(*pool_k + r * stride, k + (size_t)j * stride, sizeof(float) * stride);
        memcpy(*pool_v + r * stride, v + (size_t)j * stride, sizeof(float) * stride);
    }
    *n_table = n;
    free(seen);
    return table;
}

// The KV-cache layouts of test_attention (1: decoding, 2: prefills, 3: long decoding) in a paged cache of fp32 and of
// bf16 rows, against k_attention on the same rows unpaged (bf16: rounded first): the paged and bf16 reads of both
// kernels, the CPU reference's own among them.
static void test_attention_paged(int T, int Hq, int Hkv, int hd, int window, float softcap, int layout) {
    int rec = layout == 2 ? 37 : 7, span = layout == 3 ? 1200 : 100, rows = T * span, stride = Hkv * hd;
    float *q = rnd((size_t)T * Hq * hd, 1), *k = rnd((size_t)rows * stride, 1), *v = rnd((size_t)rows * stride, 1);
    int *lo = malloc(sizeof(int) * T), *hi = malloc(sizeof(int) * T), *base = malloc(sizeof(int) * T);
    for (int t = 0; t < T; t++) {
        if (layout == 1) base[t] = span * t, lo[t] = 0, hi[t] = (t * 13) % 39;
        if (layout == 3) base[t] = span * t, lo[t] = 0, hi[t] = 699 + (t * 37) % 450;
        if (layout == 2) base[t] = span * (t / rec), lo[t] = 0, hi[t] = t % rec;
        if (window && hi[t] - window + 1 > lo[t]) lo[t] = hi[t] - window + 1;
    }
    float scale = 1.0f / sqrtf((float)hd), *ref = malloc(sizeof(float) * T * Hq * hd), *pk, *pv;
    int n_table, *table = paged_copy(k, v, rows, stride, base, lo, hi, T, &pk, &pv, &n_table), *dtable = up(table, sizeof(int) * n_table);
    size_t pool = 0;
    for (int p = 0; p < n_table; p++) pool = table[p] + 1 > (int)pool ? (size_t)table[p] + 1 : pool;
    pool *= (size_t)stride << TEST_PAGE_SHIFT;
    int *dlo = up(lo, sizeof(int) * T), *dhi = up(hi, sizeof(int) * T), *dbase = up(base, sizeof(int) * T);
    float *dq = up(q, sizeof(float) * T * Hq * hd), *dout = poisoned((size_t)T * Hq * hd);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        uint16_t *hk16 = malloc(2 * pool), *hv16 = malloc(2 * pool);
        if (bf16) {  // the unpaged reference on the rounded values; the pool as bf16
            for (size_t i = 0; i < (size_t)rows * stride; i++)
                k[i] = ld_bf16_to_f32(ld_f32_to_bf16(k[i])), v[i] = ld_bf16_to_f32(ld_f32_to_bf16(v[i]));
            for (size_t i = 0; i < pool; i++) hk16[i] = ld_f32_to_bf16(pk[i]), hv16[i] = ld_f32_to_bf16(pv[i]);
        }
        KvRows flat = {k, v, LD_F32, NULL, 0},
               paged = {bf16 ? (void *)hk16 : pk, bf16 ? (void *)hv16 : pv, bf16 ? LD_BF16 : LD_F32, table, TEST_PAGE_SHIFT};
        k_attention(ref, NULL, q, flat, base, lo, hi, T, Hq, Hkv, hd, scale, softcap);
        float *cpu = malloc(sizeof(float) * T * Hq * hd);
        k_attention(cpu, NULL, q, paged, base, lo, hi, T, Hq, Hkv, hd, scale, softcap);
        char name[128];
        snprintf(name, sizeof name, "attention, paged %s KV (CPU), layout %d, T %d, %d/%d heads, hd %d", bf16 ? "bf16" : "fp32", layout, T,
                 Hq, Hkv, hd);
        compare(name, cpu, ref, (size_t)T * Hq * hd, 1e-6);
        size_t eb = bf16 ? 2 : 4;
        void *gk = up(paged.k, eb * pool), *gv = up(paged.v, eb * pool);
        KvRows dev = {gk, gv, paged.type, dtable, TEST_PAGE_SHIFT};
        check_rc(kc_attention(dout, NULL, dq, dev, dbase, dlo, dhi, T, Hq, Hkv, hd, scale, softcap), "attention, paged");
        float *g = down(dout, (size_t)T * Hq * hd);
        snprintf(name, sizeof name, "attention, paged %s KV, layout %d, T %d, %d/%d heads, hd %d%s%s", bf16 ? "bf16" : "fp32", layout, T,
                 Hq, Hkv, hd, window ? ", window" : "", softcap > 0 ? ", softcap" : "");
        compare(name, g, ref, (size_t)T * Hq * hd, 1e-5);
        free(g);
        if (layout == 2) {  // the tiled kernel: virtual rows as the ranges, pages not mapped inside some tiles
            int *vlo = malloc(sizeof(int) * T), *vhi = malloc(sizeof(int) * T);
            for (int t = 0; t < T; t++) vlo[t] = lo[t] + base[t], vhi[t] = hi[t] + base[t];
            int *gvlo = up(vlo, sizeof(int) * T), *gvhi = up(vhi, sizeof(int) * T);
            kc_fill(dout, NAN, (size_t)T * Hq * hd);
            check_rc(kc_attention_packed(dout, NULL, NULL, dq, dev, gvlo, gvhi, T, Hq, Hkv, hd, scale, softcap), "attention_packed, paged");
            g = down(dout, (size_t)T * Hq * hd);
            snprintf(name, sizeof name, "attention tiled, paged %s KV, T %d, %d/%d heads, hd %d%s%s", bf16 ? "bf16" : "fp32", T, Hq, Hkv,
                     hd, window ? ", window" : "", softcap > 0 ? ", softcap" : "");
            compare(name, g, ref, (size_t)T * Hq * hd, 1e-5);
            uint16_t *dout16 = kc_alloc(sizeof(uint16_t) * T * Hq * hd);
            check_attention_mma(name, dout, dout16, dq, dev, gvlo, gvhi, T, Hq, Hkv, hd, scale, softcap, ref, NULL);
            free(g), free(vlo), free(vhi), kc_free(gvlo), kc_free(gvhi), kc_free(dout16);
        }
        free(cpu), free(hk16), free(hv16), kc_free(gk), kc_free(gv);
    }
    free(q), free(k), free(v), free(ref), free(lo), free(hi), free(base), free(table), free(pk), free(pv);
    kc_free(dq), kc_free(dout), kc_free(dlo), kc_free(dhi), kc_free(dbase), kc_free(dtable);
}

// records of `rec` tokens, causal within each, optional sliding window
static void test_attention_backward(int T, int rec, int Hq, int Hkv, int hd, int window, float softcap) {
    int stride = Hkv * hd;
    size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * stride;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    float *rdq = malloc(sizeof(float) * nq), *rdk = malloc(sizeof(float) * nk), *rdv = malloc(sizeof(float) * nk);
    for (size_t i = 0; i < nk; i++) rdk[i] = rdv[i] = NAN;  // written whole, never accumulated into
    int *lo = malloc(sizeof(int) * T), *hi = malloc(sizeof(int) * T);
    for (int t = 0; t < T; t++) {
        hi[t] = t, lo[t] = t / rec * rec;
        if (window && hi[t] - window + 1 > lo[t]) lo[t] = hi[t] - window + 1;
    }
    float scale = 1.0f / sqrtf((float)hd);
    uint16_t *rdv16 = malloc(sizeof(uint16_t) * nk), *gv16 = kc_alloc(sizeof(uint16_t) * nk);
    k_attention_backward(rdq, rdk, rdv, rdv16, dout, q, k, v, lo, hi, T, Hq, Hkv, hd, scale, softcap);
    float *dq_ = up(q, sizeof(float) * nq), *dk_ = up(k, sizeof(float) * nk), *dv_ = up(v, sizeof(float) * nk),
          *ddo = up(dout, sizeof(float) * nq);
    int *dlo = up(lo, sizeof(int) * T), *dhi = up(hi, sizeof(int) * T);
    float *gq = poisoned(nq), *gk = poisoned(nk), *gv = poisoned(nk);
    float *gout = kc_alloc(sizeof(float) * nq), *glse = kc_alloc(sizeof(float) * T * Hq);  // the forward's, as training keeps them
    uint16_t *gout16 = kc_alloc(sizeof(uint16_t) * nq);
    // fp32, then as bf16 training runs it: the forward asked for a bf16 output, the backward for a bf16 dv (both on
    // tensor cores where head_dim allows)
    for (int bf16 = 0; bf16 < 2; bf16++) {
        int mma = bf16 && kc_attention_backward_mma_fits(hd), mma_fwd = bf16 && kc_attention_packed_mma_fits(hd);
        check_rc(kc_attention_packed(gout, bf16 ? gout16 : NULL, glse, dq_, (KvRows){dk_, dv_, LD_F32, NULL, 0}, dlo, dhi, T, Hq, Hkv, hd,
                                     scale, softcap),
                 "attention_packed");
        check_rc(kc_attention_backward(gq, gk, gv, bf16 ? gv16 : NULL, ddo, dq_, dk_, dv_, gout, glse, dlo, dhi, T, Hq, Hkv, hd, scale,
                                       softcap),
                 "attention_backward");
        float *hq = down(gq, nq), *hk = down(gk, nk), *hv = down(gv, nk);
        char name[160];
        const char *const parts[] = {"dq", "dk", "dv"};
        float *got[] = {hq, hk, hv}, *ref[] = {rdq, rdk, rdv};
        size_t ns[] = {nq, nk, nk};
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "attention backward %s: T %d, %d/%d heads, hd %d%s%s%s", parts[i], T, Hq, Hkv, hd,
                     window ? ", window" : "", softcap > 0 ? ", softcap" : "",
                     mma ? ", tensor cores" : mma_fwd ? ", bf16 dv, forward on tensor cores" : bf16 ? ", bf16 dv" : "");
            compare(name, got[i], ref[i], ns[i], mma || mma_fwd ? 1e-2 : 1e-5);
        }
        if (bf16) check_rounded(name, gv16, gv, rdv16, nk);
        free(hq), free(hk), free(hv);
        kc_fill(gq, NAN, nq), kc_fill(gk, NAN, nk), kc_fill(gv, NAN, nk);
    }
    kc_free(gout), kc_free(glse), kc_free(gout16);
    free(q), free(k), free(v), free(dout), free(rdq), free(rdk), free(rdv), free(rdv16), free(lo), free(hi);
    kc_free(dq_), kc_free(dk_), kc_free(dv_), kc_free(ddo), kc_free(dlo), kc_free(dhi), kc_free(gq), kc_free(gk), kc_free(gv),
        kc_free(gv16);
}

// A card with less shared memory to opt in to than an H100 (the sm_86 / sm_89 cards' 99 KB): the kernels whose
// blocks fit run (head_dim 256 forward on tensor cores, 81 KB; 128 back on them), and head_dim 256's backward, which
// needs more on either path (128 KB on tensor cores, 131 KB on the fp32 tiles), fails with an error that says so
// rather than a bare launch failure. Only the emulator can be made such a card (LLAMADUO_EMU_SMEM_OPTIN); on a GPU
// the card's own limit holds, and this says so.
static void test_attention_small_card(const char *device) {
    if (!strstr(device, "emulator")) {
        printf("note attention on a 99 KB card: not checked here (only the emulator can be told its card has 99 KB)\n");
        return;
    }
    setenv("LLAMADUO_EMU_SMEM_OPTIN", "101376", 1);
    check(!kc_attention_backward_mma_fits(256) && kc_attention_packed_mma_fits(256) && kc_attention_backward_mma_fits(128),
          "99 KB of shared memory: head_dim 256 forward and 128 back on tensor cores, not 256 back");
    test_attention(45, 8, 2, 256, 0, 0.0f, 0);
    test_attention_backward(37, 9, 8, 2, 128, 0, 0.0f);
    int T = 8, hd = 256, lo[8], hi[8];
    for (int t = 0; t < T; t++) lo[t] = 0, hi[t] = t;
    float *q = poisoned((size_t)T * hd), *g = poisoned((size_t)T * hd), *lse = poisoned(T);
    uint16_t *g16 = kc_alloc(sizeof(uint16_t) * T * hd);
    int *dlo = up(lo, sizeof lo), *dhi = up(hi, sizeof hi);
    int rc = kc_attention_backward(g, g, g, g16, q, q, q, q, q, lse, dlo, dhi, T, 1, 1, hd, 0.0625f, 0.0f);
    char name[320];
    snprintf(name, sizeof name, "99 KB of shared memory: head_dim 256's backward refused, saying why (%s)", rc ? kc_last_error() : "ran");
    check(rc != 0 && strstr(kc_last_error(), "shared memory") != NULL, name);
    unsetenv("LLAMADUO_EMU_SMEM_OPTIN");
    check(kc_attention_backward_mma_fits(256), "227 KB of shared memory: head_dim 256 back on tensor cores");
    kc_free(q), kc_free(g), kc_free(lse), kc_free(g16), kc_free(dlo), kc_free(dhi);
}

static void test_embedding(int T, int V, int D, float scale) {
    float *table = rnd((size_t)V * D, 1), *table_bf = bf16_round(table, (size_t)V * D), *dx = rnd((size_t)T * D, 1),
          *ref = malloc(sizeof(float) * T * D), *rdt = calloc((size_t)V * D, sizeof(float));
    int *tok = malloc(sizeof(int) * T);
    for (int t = 0; t < T; t++) tok[t] = (t * 31) % V;  // repeats when T > V
    for (int t = 0; t < T; t++)
        for (int j = 0; j < D; j++) {
            ref[(size_t)t * D + j] = table[(size_t)tok[t] * D + j] * scale;
            rdt[(size_t)tok[t] * D + j] += dx[(size_t)t * D + j] * scale;
        }
    float *dtab = up(table, sizeof(float) * V * D), *ddx = up(dx, sizeof(float) * T * D), *out = poisoned((size_t)T * D);
    float *gdt = kc_alloc(sizeof(float) * V * D);
    int *dtok = up(tok, sizeof(int) * T);
    kc_fill(gdt, 0, (size_t)V * D);
    check_rc(kc_embedding(out, dtab, LD_F32, dtok, T, D, scale), "embedding");
    check_rc(kc_embedding_backward(gdt, ddx, dtok, T, D, scale), "embedding_backward");
    float *g = down(out, (size_t)T * D), *gt = down(gdt, (size_t)V * D);
    char name[96];
    snprintf(name, sizeof name, "embedding [%d tokens of %d, dim %d]", T, V, D);
    compare(name, g, ref, (size_t)T * D, 1e-6);
    {  // the CPU reference of the same contract
        float *cx = malloc(sizeof(float) * T * D), *cdt = calloc((size_t)V * D, sizeof(float));
        k_embedding(cx, table, LD_F32, tok, T, D, scale);
        k_embedding_backward(cdt, dx, tok, T, D, scale);
        snprintf(name, sizeof name, "CPU embedding and backward [%d tokens of %d, dim %d]", T, V, D);
        compare(name, cx, ref, (size_t)T * D, 1e-6);
        compare(name, cdt, rdt, (size_t)V * D, 1e-6);
        free(cx), free(cdt);
    }
    {  // a bf16 table: exactly the rounded rows, scaled
        uint16_t *bits = bf16_bits(table, (size_t)V * D);
        void *dtab16 = up(bits, sizeof(uint16_t) * V * D);
        float *out16 = poisoned((size_t)T * D), *ref16 = malloc(sizeof(float) * T * D);
        for (int t = 0; t < T; t++)
            for (int j = 0; j < D; j++) ref16[(size_t)t * D + j] = table_bf[(size_t)tok[t] * D + j] * scale;
        check_rc(kc_embedding(out16, dtab16, LD_BF16, dtok, T, D, scale), "embedding bf16");
        float *g16 = down(out16, (size_t)T * D);
        snprintf(name, sizeof name, "embedding, bf16 table [%d tokens of %d, dim %d]", T, V, D);
        compare(name, g16, ref16, (size_t)T * D, 1e-6);
        free(bits), free(ref16), free(g16);
        kc_free(dtab16), kc_free(out16);
    }
    snprintf(name, sizeof name, "embedding backward [%d tokens of %d, dim %d]", T, V, D);
    compare(name, gt, rdt, (size_t)V * D, 1e-5);
    free(table), free(table_bf), free(dx), free(ref), free(rdt), free(tok), free(g), free(gt);
    kc_free(dtab), kc_free(ddx), kc_free(out), kc_free(gdt), kc_free(dtok);
}

// Dropout's mask and the row scatter/gather: the GPU and the CPU reference give the same bits.
static void test_dropout_rows(size_t n, int width) {
    float *x = rnd(n, 1), *cy = malloc(sizeof(float) * n);
    float *gx = up(x, sizeof(float) * n), *gy = poisoned(n);
    uint64_t stream = 0x1234567890abcdefull ^ n;
    k_dropout(cy, x, n, 0.3f, stream, 7);
    check_rc(kc_dropout(gy, gx, n, 0.3f, stream, 7), "dropout");
    float *hy = down(gy, n);
    size_t kept = 0, same = 0;
    for (size_t i = 0; i < n; i++) kept += cy[i] != 0, same += memcmp(&hy[i], &cy[i], sizeof(float)) == 0;
    char name[128];
    snprintf(name, sizeof name, "dropout p 0.3 [%zu]: GPU and CPU masks bit for bit", n);
    check(same == n, name);
    snprintf(name, sizeof name, "dropout p 0.3 [%zu]: share kept", n);
    check(fabs((double)kept / n - 0.7) < 0.02, name);
    int rows = (int)(n / width), *perm = malloc(sizeof(int) * rows);
    for (int i = 0; i < rows; i++) perm[i] = (i * 7 + 3) % rows;  // a permutation when rows is not a multiple of 7
    float *cs = calloc(n, sizeof(float)), *cg = calloc(n, sizeof(float));
    k_scatter_rows(cs, x, perm, rows, width);
    uint16_t *cg16 = malloc(sizeof(uint16_t) * n), *gg16 = kc_alloc(sizeof(uint16_t) * n);
    k_gather_rows(cg, cg16, cs, perm, rows, width);
    int *gperm = up(perm, sizeof(int) * rows);
    float *gs = poisoned(n), *gg = poisoned(n);
    kc_fill(gs, 0, n), kc_fill(gg, 0, n);
    check_rc(kc_scatter_rows(gs, gx, gperm, rows, width), "scatter_rows");
    check_rc(kc_gather_rows(gg, gg16, gs, gperm, rows, width), "gather_rows");
    float *hs = down(gs, n), *hg = down(gg, n);
    snprintf(name, sizeof name, "scatter/gather rows [%d x %d]", rows, width);
    check(
        !memcmp(hs, cs, sizeof(float) * n) && !memcmp(hg, x, sizeof(float) * rows * width) && !memcmp(cg, x, sizeof(float) * rows * width),
        name);
    check_rounded(name, gg16, gg, cg16, (size_t)rows * width);
    free(cg16), kc_free(gg16);
    free(x), free(cy), free(hy), free(perm), free(cs), free(cg), free(hs), free(hg);
    kc_free(gx), kc_free(gy), kc_free(gperm), kc_free(gs), kc_free(gg);
}

// C[M,N] = op(A)·op(B) in double: the independent reference for the cuBLAS paths
static void ref_gemm(float *C, const float *A, int ta, const float *B, int tb, int M, int N, int K, float alpha, float beta) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++)
                s += (double)(ta ? A[(size_t)p * M + i] : A[(size_t)i * K + p]) * (tb ? B[(size_t)j * K + p] : B[(size_t)p * N + j]);
            C[(size_t)i * N + j] = (float)(alpha * s + (beta != 0.0f ? beta * C[(size_t)i * N + j] : 0.0));  // (C unread: it may be garbage)
        }
}

// The reference sequence of the LoRA linear forward and backward, in double, given (possibly bf16-rounded) base
// inputs: xb/Wb for the base product, dyb for the base's share of dx; the adapter's terms always in fp32 inputs.
// dx accumulates onto what it holds; y gets the bias.
static void ref_lora(float *y, float *ax, float *dx, float *dyB, float *dA, float *dB, const float *x, const float *xb, const float *W,
                     const float *bias, const float *A, const float *B, const float *dy, const float *dyb, float s, int T, int in, int out,
                     int r) {
    ref_gemm(y, xb, 0, W, 1, T, out, in, 1, 0);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) y[(size_t)t * out + o] += bias[o];
    ref_gemm(ax, x, 0, A, 1, T, r, in, 1, 0);
    ref_gemm(y, ax, 0, B, 1, T, out, r, s, 1);
    ref_gemm(dx, dyb, 0, W, 0, T, in, out, 1, 1);
    ref_gemm(dyB, dy, 0, B, 0, T, r, out, s, 0);
    ref_gemm(dx, dyB, 0, A, 0, T, in, r, 1, 1);
    ref_gemm(dB, dy, 1, ax, 0, out, r, T, s, 0);
    ref_gemm(dA, dyB, 1, x, 0, r, in, T, 1, 0);
}

// The CPU reference of the same contract (kernels/cpu/lora_linear.c) against the double reference: fp32 W.
static void check_cpu_lora(const float *x, const float *W, const float *bias, const float *A, const float *B, const float *dy,
                           const float *dx0, const float *y_ref, const float *dx_ref, const float *dA_ref, const float *dB_ref, float s,
                           int T, int in, int out, int r) {
    float *y = calloc((size_t)T * out, sizeof(float)), *ax = calloc((size_t)T * r, sizeof(float)),
          *dyB = calloc((size_t)T * r, sizeof(float));
    float *dx = malloc(sizeof(float) * T * in), *dA = calloc((size_t)r * in, sizeof(float)), *dB = calloc((size_t)out * r, sizeof(float));
    memcpy(dx, dx0, sizeof(float) * T * in);
    k_lora_linear(y, ax, x, W, LD_F32, bias, A, B, s, T, in, out, r);
    k_lora_linear_backward(dx, 1, NULL, NULL, dA, dB, dyB, dy, x, ax, W, LD_F32, A, B, s, T, in, out, r);
    char name[128];
    snprintf(name, sizeof name, "CPU LoRA linear y, dx, dA, dB [%d x %d -> %d, r %d]", T, in, out, r);
    compare(name, y, y_ref, (size_t)T * out, 1e-5);
    compare(name, dx, dx_ref, (size_t)T * in, 1e-5);
    compare(name, dA, dA_ref, (size_t)r * in, 1e-5);
    compare(name, dB, dB_ref, (size_t)out * r, 1e-5);
    free(y), free(ax), free(dyB), free(dx), free(dA), free(dB);
}

// Full fine-tuning (fp32 W): dW[out,in] += dyᵀ·x and dbias[out] += Σ_t dy[t,:] onto random values (accumulated,
// not overwritten), against the double reference; once with dx and the adapter's gradients in the same call, once
// with dx NULL (dW alone, and dA/dB from the adapter path that then skips dx). dx from dx0 to dx_ref; dA_ref,
// dB_ref: from zero.
static void test_lora_weight_grads(const float *gx, const void *gW, const float *gA, const float *gB, const float *gdy, const float *gax,
                                   const float *x, const float *dy, const float *dx0, const float *dx_ref, const float *dA_ref,
                                   const float *dB_ref, float s, int T, int in, int out, int r) {
    size_t nw = (size_t)out * in;
    float *dW0 = rnd(nw, 1), *db0 = rnd(out, 1), *dW_ref = malloc(sizeof(float) * nw), *db_ref = malloc(sizeof(float) * out);
    memcpy(dW_ref, dW0, sizeof(float) * nw);
    ref_gemm(dW_ref, dy, 1, x, 0, out, in, T, 1, 1);
    for (int o = 0; o < out; o++) {
        double acc = db0[o];
        for (int t = 0; t < T; t++) acc += dy[(size_t)t * out + o];
        db_ref[o] = (float)acc;
    }
    float *gdx = up(dx0, sizeof(float) * T * in), *gdW = up(dW0, sizeof(float) * nw), *gdb = up(db0, sizeof(float) * out);
    float *gdyB = poisoned((size_t)T * r), *gdA = kc_alloc(sizeof(float) * r * in), *gdB = kc_alloc(sizeof(float) * out * r);
    kc_fill(gdA, 0, (size_t)r * in), kc_fill(gdB, 0, (size_t)out * r);
    check_rc(kc_lora_linear_backward(gdx, 1, gdW, gdb, gdA, gdB, gdyB, gdy, NULL, gx, gax, gW, LD_F32, gA, gB, s, T, in, out, r),
             "lora_linear_backward dW, dbias");
    float *hdW = down(gdW, nw), *hdb = down(gdb, out), *hdA = down(gdA, (size_t)r * in), *hdB = down(gdB, (size_t)out * r),
          *hdx = down(gdx, (size_t)T * in);
    char name[128];
    snprintf(name, sizeof name, "LoRA linear backward dW (accumulated), fp32 [%d x %d -> %d]", T, in, out);
    compare(name, hdW, dW_ref, nw, 1e-5);
    snprintf(name, sizeof name, "LoRA linear backward dbias (accumulated), fp32 [%d x %d -> %d]", T, in, out);
    compare(name, hdb, db_ref, out, 1e-5);
    snprintf(name, sizeof name, "LoRA linear backward dA beside dW, fp32 [%d x %d -> %d, r %d]", T, in, out, r);
    compare(name, hdA, dA_ref, (size_t)r * in, 1e-5);
    snprintf(name, sizeof name, "LoRA linear backward dB beside dW, fp32 [%d x %d -> %d, r %d]", T, in, out, r);
    compare(name, hdB, dB_ref, (size_t)out * r, 1e-5);
    snprintf(name, sizeof name, "LoRA linear backward dx beside dW, fp32 [%d x %d -> %d, r %d]", T, in, out, r);
    compare(name, hdx, dx_ref, (size_t)T * in, 1e-5);
    free(hdW), free(hdA), free(hdB), free(hdx);
    // dx NULL: dW (and the adapter's gradients) with no dx product at all
    kc_upload(gdW, dW0, sizeof(float) * nw);
    kc_fill(gdA, 0, (size_t)r * in), kc_fill(gdB, 0, (size_t)out * r);
    check_rc(kc_lora_linear_backward(NULL, 1, gdW, NULL, gdA, gdB, gdyB, gdy, NULL, gx, gax, gW, LD_F32, gA, gB, s, T, in, out, r),
             "lora_linear_backward dx NULL");
    hdW = down(gdW, nw), hdA = down(gdA, (size_t)r * in), hdB = down(gdB, (size_t)out * r);
    snprintf(name, sizeof name, "LoRA linear backward dW, dx NULL, fp32 [%d x %d -> %d]", T, in, out);
    compare(name, hdW, dW_ref, nw, 1e-5);
    snprintf(name, sizeof name, "LoRA linear backward dA, dx NULL, fp32 [%d x %d -> %d, r %d]", T, in, out, r);
    compare(name, hdA, dA_ref, (size_t)r * in, 1e-5);
    snprintf(name, sizeof name, "LoRA linear backward dB, dx NULL, fp32 [%d x %d -> %d, r %d]", T, in, out, r);
    compare(name, hdB, dB_ref, (size_t)out * r, 1e-5);
    free(dW0), free(db0), free(dW_ref), free(db_ref), free(hdW), free(hdb), free(hdA), free(hdB);
    kc_free(gdx), kc_free(gdW), kc_free(gdb), kc_free(gdyB), kc_free(gdA), kc_free(gdB);
}

// dW through a BF16 W (full fine-tuning in bf16, the fp32 master's gradient): dyᵀ·x in fp32 as with an fp32 W,
// accumulated onto random values; only dx reads the bf16 W.
static void test_lora_weight_grads_bf16(const float *gx, const void *gW, const float *gdy, const float *x, const float *dy, int T, int in,
                                        int out) {
    size_t nw = (size_t)out * in;
    float *dW0 = rnd(nw, 1), *dW_ref = malloc(sizeof(float) * nw), *gdx = kc_alloc(sizeof(float) * T * in), *gdW = up(dW0, sizeof(float) * nw);
    memcpy(dW_ref, dW0, sizeof(float) * nw);
    ref_gemm(dW_ref, dy, 1, x, 0, out, in, T, 1, 1);
    kc_fill(gdx, 0, (size_t)T * in);
    check_rc(kc_lora_linear_backward(gdx, 1, gdW, NULL, NULL, NULL, NULL, gdy, NULL, gx, NULL, gW, LD_BF16, NULL, NULL, 0, T, in, out, 0),
             "lora_linear_backward dW, bf16 W");
    float *hdW = down(gdW, nw);
    char name[128];
    snprintf(name, sizeof name, "LoRA linear backward dW (accumulated), bf16 W [%d x %d -> %d]", T, in, out);
    compare(name, hdW, dW_ref, nw, 1e-5);
    free(dW0), free(dW_ref), free(hdW);
    kc_free(gdx), kc_free(gdW);
}

// bf16: W on the device in bf16; checked against the fp32 reference (1e-2) and against the reference on the
// same rounded inputs (1e-5: the accumulation is fp32). The adapter's gradients do not see the rounding.
static void test_lora_linear(int T, int in, int out, int r, int bf16) {
    float s = 2.0f;
    float *x = rnd((size_t)T * in, 1), *W = rnd((size_t)out * in, 0.1f), *A = rnd((size_t)r * in, 0.1f), *B = rnd((size_t)out * r, 0.1f);
    float *bias = rnd((size_t)out, 1), *dx0 = rnd((size_t)T * in, 1);
    float *dy = rnd((size_t)T * out, 1), *y = calloc((size_t)T * out, sizeof(float)), *ax = calloc((size_t)T * r, sizeof(float));
    float *dx = malloc(sizeof(float) * T * in), *dyB = calloc((size_t)T * r, sizeof(float));
    float *dA = calloc((size_t)r * in, sizeof(float)), *dB = calloc((size_t)out * r, sizeof(float));
    memcpy(dx, dx0, sizeof(float) * T * in);
    ref_lora(y, ax, dx, dyB, dA, dB, x, x, W, bias, A, B, dy, dy, s, T, in, out, r);
    if (!bf16) check_cpu_lora(x, W, bias, A, B, dy, dx0, y, dx, dA, dB, s, T, in, out, r);
    uint16_t *W16 = bf16 ? bf16_bits(W, (size_t)out * in) : NULL;
    float *gx = up(x, sizeof(float) * T * in), *gA = up(A, sizeof(float) * r * in), *gB = up(B, sizeof(float) * out * r);
    void *gW = bf16 ? up(W16, sizeof(uint16_t) * out * in) : up(W, sizeof(float) * out * in);
    float *gbias = up(bias, sizeof(float) * out), *gdx = up(dx0, sizeof(float) * T * in);
    float *gdy = up(dy, sizeof(float) * T * out), *gy = poisoned((size_t)T * out), *gax = poisoned((size_t)T * r);
    float *gdyB = poisoned((size_t)T * r), *gdA = kc_alloc(sizeof(float) * r * in), *gdB = kc_alloc(sizeof(float) * out * r);
    LdDtype wt = bf16 ? LD_BF16 : LD_F32;
    kc_fill(gdA, 0, (size_t)r * in), kc_fill(gdB, 0, (size_t)out * r);
    check_rc(kc_lora_linear(gy, gax, gx, NULL, gW, wt, gbias, gA, gB, s, T, in, out, r), "lora_linear");
    check_rc(kc_lora_linear_backward(gdx, 1, NULL, NULL, gdA, gdB, gdyB, gdy, NULL, gx, gax, gW, wt, gA, gB, s, T, in, out, r),
             "lora_linear_backward");
    float *hy = down(gy, (size_t)T * out), *hdx = down(gdx, (size_t)T * in), *hdA = down(gdA, (size_t)r * in),
          *hdB = down(gdB, (size_t)out * r);
    char name[128];
    const char *p = bf16 ? "bf16 W" : "fp32";
    double bound = bf16 ? 1e-2 : 1e-5;
    snprintf(name, sizeof name, "LoRA linear y, %s [%d x %d -> %d, r %d]", p, T, in, out, r);
    compare(name, hy, y, (size_t)T * out, bound);
    snprintf(name, sizeof name, "LoRA linear backward dx, %s [%d x %d -> %d, r %d]", p, T, in, out, r);
    compare(name, hdx, dx, (size_t)T * in, bound);
    snprintf(name, sizeof name, "LoRA linear backward dA, %s [%d x %d -> %d, r %d]", p, T, in, out, r);
    compare(name, hdA, dA, (size_t)r * in, 1e-5);
    snprintf(name, sizeof name, "LoRA linear backward dB, %s [%d x %d -> %d, r %d]", p, T, in, out, r);
    compare(name, hdB, dB, (size_t)out * r, 1e-5);
    if (!bf16) test_lora_weight_grads(gx, gW, gA, gB, gdy, gax, x, dy, dx0, dx, dA, dB, s, T, in, out, r);
    else test_lora_weight_grads_bf16(gx, gW, gdy, x, dy, T, in, out);
    if (bf16) {  // the same products on the rounded inputs: only accumulation order may differ
        float *xb = bf16_round(x, (size_t)T * in), *Wb = bf16_round(W, (size_t)out * in), *dyb = bf16_round(dy, (size_t)T * out);
        memset(y, 0, sizeof(float) * T * out), memset(dA, 0, sizeof(float) * r * in), memset(dB, 0, sizeof(float) * out * r);
        memcpy(dx, dx0, sizeof(float) * T * in);
        ref_lora(y, ax, dx, dyB, dA, dB, x, xb, Wb, bias, A, B, dy, dyb, s, T, in, out, r);
        snprintf(name, sizeof name, "LoRA linear y, bf16 W vs rounded-input ref [%d x %d -> %d]", T, in, out);
        compare(name, hy, y, (size_t)T * out, 1e-5);
        // x rounded by its producer (x16 given): the same bits as rounding it here
        uint16_t *x16 = bf16_bits(x, (size_t)T * in);
        void *gx16 = up(x16, sizeof(uint16_t) * T * in);
        float *gy2 = poisoned((size_t)T * out), *gax2 = poisoned((size_t)T * r);
        check_rc(kc_lora_linear(gy2, gax2, gx, gx16, gW, wt, gbias, gA, gB, s, T, in, out, r), "lora_linear, x16 given");
        float *hy2 = down(gy2, (size_t)T * out), *hax = down(gax, (size_t)T * r), *hax2 = down(gax2, (size_t)T * r);
        snprintf(name, sizeof name, "LoRA linear y and ax with x16 given = rounding x inside, bit for bit [%d x %d -> %d]", T, in, out);
        check(!memcmp(hy2, hy, sizeof(float) * T * out) && !memcmp(hax2, hax, sizeof(float) * T * r), name);
        // dy rounded by its producer (dy16 given): dx the same bits as rounding dy here
        uint16_t *dy16 = bf16_bits(dy, (size_t)T * out);
        void *gdy16 = up(dy16, sizeof(uint16_t) * T * out);
        float *gdx2 = up(dx0, sizeof(float) * T * in);
        check_rc(kc_lora_linear_backward(gdx2, 1, NULL, NULL, NULL, NULL, gdyB, gdy, gdy16, gx, gax, gW, wt, gA, gB, s, T, in, out, r),
                 "lora_linear_backward, dy16 given");
        float *hdx2 = down(gdx2, (size_t)T * in);
        snprintf(name, sizeof name, "LoRA linear dx with dy16 given = rounding dy inside, bit for bit [%d x %d -> %d]", T, in, out);
        check(!memcmp(hdx2, hdx, sizeof(float) * T * in), name);
        free(x16), free(hy2), free(hax), free(hax2), free(dy16), free(hdx2);
        kc_free(gx16), kc_free(gy2), kc_free(gax2), kc_free(gdy16), kc_free(gdx2);
        snprintf(name, sizeof name, "LoRA linear dx, bf16 W vs rounded-input ref [%d x %d -> %d]", T, in, out);
        compare(name, hdx, dx, (size_t)T * in, 1e-5);
        free(xb), free(Wb), free(dyb);
    }
    free(x), free(W), free(W16), free(A), free(B), free(bias), free(dx0), free(dy), free(y), free(ax), free(dx), free(dyB), free(dA),
        free(dB), free(hy), free(hdx), free(hdA), free(hdB);
    kc_free(gx), kc_free(gW), kc_free(gA), kc_free(gB), kc_free(gbias), kc_free(gdy), kc_free(gy), kc_free(gax), kc_free(gdx),
        kc_free(gdyB), kc_free(gdA), kc_free(gdB);
}

// The double reference of the three linears of test_lora_linears: y, dx (onto dx0), the stacked dA and each dB.
static void ref_lora_linears(float **y, float *dx, float *dA, float **dB, const float *x, float *const *W, float *const *bias,
                             const float *A, float *const *B, float *const *dy, const int *outs, int count, float s, int T, int in, int r) {
    float *ax = malloc(sizeof(float) * T * r), *dyB = malloc(sizeof(float) * T * r);
    for (int j = 0, k = 0; j < count; j++) {
        if (B[j]) {
            ref_lora(y[j], ax, dx, dyB, dA + (size_t)k * r * in, dB[j], x, x, W[j], bias[j], A + (size_t)k * r * in, B[j], dy[j], dy[j], s,
                     T, in, outs[j], r);
            k++;
            continue;
        }
        ref_gemm(y[j], x, 0, W[j], 1, T, outs[j], in, 1, 0);
        for (int t = 0; t < T; t++)
            for (int o = 0; o < outs[j]; o++) y[j][(size_t)t * outs[j] + o] += bias[j][o];
        ref_gemm(dx, dy[j], 0, W[j], 0, T, in, outs[j], 1, 1);
    }
    free(ax), free(dyB);
}

// n_jobs (up to 4) linears on one input (q, k and v, or gate and up), those in the mask adapted (mask 5: q and v),
// their adapters' A stacked in one [m·r, in] matrix: the forward and the backward in one call each (kc_lora_linears, kc_lora_linears_backward) against
// the double reference (fp32 1e-5, bf16 W 1e-2; the adapters' gradients 1e-5 either way), and the CPU's
// k_lora_linears / k_lora_linears_backward likewise (fp32).
static void test_lora_linears(int T, int in, int r, int bf16, int jobs, unsigned mask) {
    enum { MAX_JOBS = 4 };
    const int outs[MAX_JOBS] = {96, 40, 40, 64};
    int m = 0;
    for (int j = 0; j < jobs; j++) m += mask >> j & 1;
    const float s = 0.5f;
    LdDtype wt = bf16 ? LD_BF16 : LD_F32;
    float *x = rnd((size_t)T * in, 1), *A = rnd((size_t)m * r * in, 0.1f), *dx0 = rnd((size_t)T * in, 1);
    float *W[MAX_JOBS], *bias[MAX_JOBS], *B[MAX_JOBS], *dy[MAX_JOBS], *y_ref[MAX_JOBS], *dB_ref[MAX_JOBS], *y_cpu[MAX_JOBS], *dB_cpu[MAX_JOBS];
    float *gW[MAX_JOBS], *gbias[MAX_JOBS], *gB[MAX_JOBS], *gdy[MAX_JOBS], *gy[MAX_JOBS], *gdB[MAX_JOBS];
    LoraLinearJob dev[MAX_JOBS], host[MAX_JOBS];
    LoraLinearGrad dev_g[MAX_JOBS], host_g[MAX_JOBS];
    for (int j = 0; j < jobs; j++) {
        int out = outs[j], adapted = mask >> j & 1;
        size_t nw = (size_t)out * in, ny = (size_t)T * out, nb = (size_t)out * r;
        W[j] = rnd(nw, 0.1f), bias[j] = rnd(out, 1), B[j] = adapted ? rnd(nb, 0.1f) : NULL, dy[j] = rnd(ny, 1);
        y_ref[j] = calloc(ny, sizeof(float)), y_cpu[j] = calloc(ny, sizeof(float));
        dB_ref[j] = adapted ? calloc(nb, sizeof(float)) : NULL, dB_cpu[j] = adapted ? calloc(nb, sizeof(float)) : NULL;
        uint16_t *W16 = bf16_bits(W[j], nw);
        gW[j] = bf16 ? up(W16, sizeof(uint16_t) * nw) : up(W[j], sizeof(float) * nw);
        free(W16);
        gbias[j] = up(bias[j], sizeof(float) * out), gdy[j] = up(dy[j], sizeof(float) * ny), gy[j] = poisoned(ny);
        gB[j] = adapted ? up(B[j], sizeof(float) * nb) : NULL, gdB[j] = adapted ? kc_alloc(sizeof(float) * nb) : NULL;
        if (adapted) kc_fill(gdB[j], 0, nb);
        dev[j] = (LoraLinearJob){gy[j], gW[j], wt, gbias[j], gB[j], out};
        host[j] = (LoraLinearJob){y_cpu[j], W[j], LD_F32, bias[j], B[j], out};
        dev_g[j] = (LoraLinearGrad){gdy[j], NULL, gW[j], wt, gB[j], gdB[j], NULL, NULL, out};
        host_g[j] = (LoraLinearGrad){dy[j], NULL, W[j], LD_F32, B[j], dB_cpu[j], NULL, NULL, out};
    }
    size_t nx = (size_t)T * in, na = (size_t)m * r * in, nax = (size_t)m * r * T;
    float *dx_ref = malloc(sizeof(float) * nx), *dA_ref = calloc(na, sizeof(float));
    memcpy(dx_ref, dx0, sizeof(float) * nx);
    ref_lora_linears(y_ref, dx_ref, dA_ref, dB_ref, x, W, bias, A, B, dy, outs, jobs, s, T, in, r);
    float *gx = up(x, sizeof(float) * nx), *gA = up(A, sizeof(float) * na), *gdx = up(dx0, sizeof(float) * nx);
    float *gax = poisoned(nax), *gdyB = poisoned(nax), *gdA = kc_alloc(sizeof(float) * na);
    kc_fill(gdA, 0, na);
    check_rc(kc_lora_linears(dev, jobs, gax, gx, NULL, gA, s, T, in, r), "lora_linears");
    check_rc(kc_lora_linears_backward(dev_g, jobs, gdx, 1, gdA, gdyB, gx, gax, gA, s, T, in, r), "lora_linears_backward");
    char name[160];
    const char *p = bf16 ? "bf16 W" : "fp32";
    double bound = bf16 ? 1e-2 : 1e-5;
    for (int j = 0; j < jobs; j++) {
        float *y = down(gy[j], (size_t)T * outs[j]);
        snprintf(name, sizeof name, "LoRA linears on one input, %d of %d adapted, %s, job %d y [%d x %d -> %d, r %d]", m, jobs, p, j, T, in,
                 outs[j], r);
        compare(name, y, y_ref[j], (size_t)T * outs[j], bound);
        free(y);
        if (!B[j]) continue;
        float *dB = down(gdB[j], (size_t)outs[j] * r);
        snprintf(name, sizeof name, "LoRA linears backward, stacked adapters, %s, job %d dB", p, j);
        compare(name, dB, dB_ref[j], (size_t)outs[j] * r, 1e-5);
        free(dB);
    }
    float *hdx = down(gdx, nx), *hdA = down(gdA, na);
    snprintf(name, sizeof name, "LoRA linears backward, stacked adapters, %s: dx [%d x %d, r %d]", p, T, in, r);
    compare(name, hdx, dx_ref, nx, bound);
    snprintf(name, sizeof name, "LoRA linears backward, stacked adapters, %s: the stacked dA [%d x %d, r %d]", p, T, in, r);
    compare(name, hdA, dA_ref, na, 1e-5);
    // dx written (dx_add 0): into NaN, the sum from zero, on the device and on the CPU
    float *dx_new = calloc(nx, sizeof(float)), *scratch_dA = calloc(na, sizeof(float)), *scratch_y[MAX_JOBS], *scratch_dB[MAX_JOBS];
    for (int j = 0; j < jobs; j++)
        scratch_y[j] = calloc((size_t)T * outs[j], sizeof(float)), scratch_dB[j] = B[j] ? calloc((size_t)outs[j] * r, sizeof(float)) : NULL;
    ref_lora_linears(scratch_y, dx_new, scratch_dA, scratch_dB, x, W, bias, A, B, dy, outs, jobs, s, T, in, r);
    float *gdx_new = poisoned(nx);
    LoraLinearGrad dev_dx_only[MAX_JOBS];  // (no dB, no dA: the dx alone)
    for (int j = 0; j < jobs; j++) dev_dx_only[j] = dev_g[j], dev_dx_only[j].dB = NULL;
    check_rc(kc_lora_linears_backward(dev_dx_only, jobs, gdx_new, 0, NULL, gdyB, gx, gax, gA, s, T, in, r), "lora_linears_backward, dx written");
    float *hdx_new = down(gdx_new, nx);
    snprintf(name, sizeof name, "LoRA linears backward, stacked adapters, %s: dx written, not added [%d x %d, r %d]", p, T, in, r);
    compare(name, hdx_new, dx_new, nx, bound);
    if (!bf16) {
        float *dx_cpu = malloc(sizeof(float) * nx), *dyB_cpu = calloc(nax, sizeof(float)), *ax_cpu = calloc(nax, sizeof(float));
        LoraLinearGrad dx_only[MAX_JOBS];  // (the dB checked below stays as the first call made it)
        for (int j = 0; j < jobs; j++) dx_only[j] = host_g[j], dx_only[j].dB = NULL;
        for (size_t i = 0; i < nx; i++) dx_cpu[i] = NAN;
        k_lora_linears(host, jobs, ax_cpu, x, A, s, T, in, r);
        k_lora_linears_backward(dx_only, jobs, dx_cpu, 0, NULL, dyB_cpu, x, ax_cpu, A, s, T, in, r);
        compare("CPU LoRA linears backward, stacked adapters: dx written, not added", dx_cpu, dx_new, nx, 1e-5);
        free(dx_cpu), free(dyB_cpu), free(ax_cpu);
    }
    if (!bf16) {  // no base weight: dx from the adapter alone (dropout's masked copy), or zeros with no product at all
        int j0 = 0;  // the first adapted job: its A and ax lead the stacks
        while (j0 < jobs - 1 && !B[j0]) j0++;
        float *want = malloc(sizeof(float) * nx), *zeros = calloc(nx, sizeof(float)), *ax_c = calloc(nax, sizeof(float)),
              *dyB_c = calloc(nax, sizeof(float)), *g_ad = poisoned(nx), *g_none = poisoned(nx);
        k_lora_linears(host, jobs, ax_c, x, A, s, T, in, r);
        for (size_t i = 0; i < nx; i++) want[i] = NAN;
        k_lora_linear_backward(want, 0, NULL, NULL, NULL, NULL, dyB_c, dy[j0], x, ax_c, NULL, LD_F32, A, B[j0], s, T, in, outs[j0], r);
        check_rc(kc_lora_linear_backward(g_ad, 0, NULL, NULL, NULL, NULL, gdyB, gdy[j0], NULL, gx, gax, NULL, LD_F32, gA, gB[j0], s, T, in,
                                         outs[j0], r),
                 "lora_linear_backward, the adapter alone");
        check_rc(kc_lora_linear_backward(g_none, 0, NULL, NULL, NULL, NULL, NULL, gdy[j0], NULL, gx, NULL, NULL, LD_F32, NULL, NULL, 0, T,
                                         in, outs[j0], 0),
                 "lora_linear_backward, no product");
        float *h_ad = down(g_ad, nx), *h_none = down(g_none, nx);
        compare("LoRA linear backward, no base weight: dx written by the adapter's product alone (into NaN)", h_ad, want, nx, 1e-5);
        compare("LoRA linear backward, no base weight and no adapter: dx zeros (into NaN)", h_none, zeros, nx, 1e-30);
        free(want), free(zeros), free(ax_c), free(dyB_c), free(h_ad), free(h_none);
        kc_free(g_ad), kc_free(g_none);
    }
    for (int j = 0; j < jobs; j++) free(scratch_y[j]), free(scratch_dB[j]);
    free(dx_new), free(scratch_dA), free(hdx_new);
    kc_free(gdx_new);
    if (!bf16) {  // the CPU reference of the same contract
        float *ax = calloc(nax, sizeof(float)), *dyB = calloc(nax, sizeof(float)), *dx = malloc(sizeof(float) * nx),
              *dA = calloc(na, sizeof(float));
        memcpy(dx, dx0, sizeof(float) * nx);
        k_lora_linears(host, jobs, ax, x, A, s, T, in, r);
        k_lora_linears_backward(host_g, jobs, dx, 1, dA, dyB, x, ax, A, s, T, in, r);
        for (int j = 0; j < jobs; j++) {
            snprintf(name, sizeof name, "CPU LoRA linears, stacked adapters, job %d y", j);
            compare(name, y_cpu[j], y_ref[j], (size_t)T * outs[j], 1e-5);
            if (B[j]) compare("CPU LoRA linears backward, stacked adapters: dB", dB_cpu[j], dB_ref[j], (size_t)outs[j] * r, 1e-5);
        }
        compare("CPU LoRA linears backward, stacked adapters: dx", dx, dx_ref, nx, 1e-5);
        compare("CPU LoRA linears backward, stacked adapters: the stacked dA", dA, dA_ref, na, 1e-5);
        free(ax), free(dyB), free(dx), free(dA);
    }
    for (int j = 0; j < jobs; j++) {
        free(W[j]), free(bias[j]), free(B[j]), free(dy[j]), free(y_ref[j]), free(y_cpu[j]), free(dB_ref[j]), free(dB_cpu[j]);
        kc_free(gW[j]), kc_free(gbias[j]), kc_free(gB[j]), kc_free(gdy[j]), kc_free(gy[j]), kc_free(gdB[j]);
    }
    free(x), free(A), free(dx0), free(dx_ref), free(dA_ref), free(hdx), free(hdA);
    kc_free(gx), kc_free(gA), kc_free(gdx), kc_free(gax), kc_free(gdyB), kc_free(gdA);
}

// The fused head's dw[V,D] (full fine-tuning, fp32 W) += dlᵀ·x onto random values, accumulated over the chunks
// (dl: the reference's logit gradients, 0 on ignored rows); with dx, and with dx NULL (dw alone), the loss each time.
static void test_head_weight_grad(const float *gx, const void *gW, const float *x, const float *dl, const int *tg, int T, int D, int V,
                                  float cap, int chunk, float loss_ref) {
    size_t nw = (size_t)V * D;
    float *dw_ref = calloc(nw, sizeof(float));
    ref_gemm(dw_ref, dl, 1, x, 0, V, D, T, 1, 0);
    double ss = 0;
    for (size_t i = 0; i < nw; i++) ss += (double)dw_ref[i] * dw_ref[i];
    // the prefill at the gradient's own scale (dl is ~1/n): a wrong or missing chunk's share cannot hide under it
    float *dw0 = rnd(nw, (float)sqrt(ss / nw));
    for (size_t i = 0; i < nw; i++) dw_ref[i] += dw0[i];
    char name[128];
    for (int with_dx = 1; with_dx >= 0; with_dx--) {
        float *gdw = up(dw0, sizeof(float) * nw), *gdx = with_dx ? poisoned((size_t)T * D) : NULL, loss = NAN;
        int nc = -1;
        check_rc(kc_linear_cross_entropy(gdx, gdw, gx, gW, LD_F32, tg, T, D, V, cap, -100, chunk, 0, &loss, &nc),
                 with_dx ? "linear_cross_entropy dw" : "linear_cross_entropy dw, dx NULL");
        float *hdw = down(gdw, nw);
        snprintf(name, sizeof name, "fused head+loss dw (accumulated)%s, fp32 [%d x %d -> %d], cap %g, chunk %d", with_dx ? "" : ", dx NULL",
                 T, D, V, cap, chunk);
        compare(name, hdw, dw_ref, nw, 1e-5);
        snprintf(name, sizeof name, "fused head+loss loss beside dw%s, fp32 [%d x %d -> %d]", with_dx ? "" : ", dx NULL", T, D, V);
        compare(name, &loss, &loss_ref, 1, 1e-5);
        free(hdw);
        kc_free(gdw), kc_free(gdx);
    }
    free(dw0), free(dw_ref);
}

// The fused head + loss against the unfused CPU sequence (full logits, soft-cap, cross-entropy, and back), with
// ignored rows, several chunks and a remainder; bf16: W rounded on the device, 1e-2 against the fp32 reference.
static void test_linear_cross_entropy(int T, int D, int V, float cap, int chunk, int bf16) {
    float *x = rnd((size_t)T * D, 1), *W = rnd((size_t)V * D, 0.2f), *lg = calloc((size_t)T * V, sizeof(float));
    float *dl = malloc(sizeof(float) * T * V), *rdx = calloc((size_t)T * D, sizeof(float));
    int *tg = malloc(sizeof(int) * T), nc_ref, nc;
    for (int t = 0; t < T; t++) tg[t] = t % 4 == 2 ? -100 : (t * 7919 + 13) % V;
    ref_gemm(lg, x, 0, W, 1, T, V, D, 1, 0);
    if (cap > 0) k_softcap(lg, (size_t)T * V, cap);
    float loss_ref = k_cross_entropy(dl, lg, tg, T, V, -100, &nc_ref), loss = NAN;
    if (cap > 0) k_softcap_backward(dl, dl, lg, (size_t)T * V, cap);
    ref_gemm(rdx, dl, 0, W, 0, T, D, V, 1, 0);
    uint16_t *W16 = bf16 ? bf16_bits(W, (size_t)V * D) : NULL;
    void *gW = bf16 ? up(W16, sizeof(uint16_t) * V * D) : up(W, sizeof(float) * V * D);
    float *gx = up(x, sizeof(float) * T * D), *gdx = poisoned((size_t)T * D);
    check_rc(kc_linear_cross_entropy(gdx, NULL, gx, gW, bf16 ? LD_BF16 : LD_F32, tg, T, D, V, cap, -100, chunk, 0, &loss, &nc),
             "linear_cross_entropy");
    if (!bf16) test_head_weight_grad(gx, gW, x, dl, tg, T, D, V, cap, chunk, loss_ref);
    float *hdx = down(gdx, (size_t)T * D);
    char name[128];
    double bound = bf16 ? 1e-2 : 1e-5;
    snprintf(name, sizeof name, "fused head+loss dx, %s [%d x %d -> %d], cap %g, chunk %d", bf16 ? "bf16 W" : "fp32", T, D, V, cap, chunk);
    compare(name, hdx, rdx, (size_t)T * D, bound);
    snprintf(name, sizeof name, "fused head+loss loss, %s [%d x %d -> %d] (%d counted)", bf16 ? "bf16 W" : "fp32", T, D, V, nc);
    compare(name, &loss, &loss_ref, 1, bf16 ? 1e-2 : 1e-5);
    if (nc != nc_ref) g_fail++, printf("FAIL fused head+loss counted %d, reference %d\n", nc, nc_ref);
    free(x), free(W), free(W16), free(lg), free(dl), free(rdx), free(tg), free(hdx);
    kc_free(gW), kc_free(gx), kc_free(gdx);
}

// Token choice for many rows at once against k_sample_row on the same (penalised) logits and the same u: the
// picks must be identical. Rows mix greedy and sampled settings, penalties (repetition; frequency and presence,
// also on tokens the repetition penalty touched, which then take both in order), ties (logits on a 0.5 grid) and
// rows with too many candidates for the device (picked -1: the penalised row left on the device must be the CPU's).
static void test_sample(int n_rows, int V, float scale, int grid) {
    float *x = rnd((size_t)n_rows * V, scale), *ref = malloc(sizeof(float) * n_rows * V);
    if (grid)
        for (size_t i = 0; i < (size_t)n_rows * V; i++) x[i] = roundf(x[i] * 2) / 2;
    KcSampleRow *rows = calloc((size_t)n_rows, sizeof(KcSampleRow));
    int *pen = malloc(sizeof(int) * 8 * n_rows), *cnt_tok = malloc(sizeof(int) * 6 * n_rows), *cnt = malloc(sizeof(int) * 6 * n_rows),
        *picked = malloc(sizeof(int) * n_rows);
    for (int r = 0; r < n_rows; r++) {
        KcSampleRow *s = &rows[r];
        int kind = r % 6;
        s->temperature = kind == 0 ? 0.0f : kind == 5 ? 2.0f : 0.3f + 0.2f * kind;
        s->top_k = kind == 2 ? 40 : 0, s->top_p = kind == 3 ? 0.9f : 1.0f, s->min_p = kind == 4 ? 0.05f : 0.0f;
        s->repeat_penalty = r % 2 ? 1.3f : 1.0f, s->u = (frand() + 1) / 2;
        s->penalized = pen + 8 * r, s->n_penalized = 8;
        for (int k = 0; k < 8; k++) pen[8 * r + k] = (r * 131 + k * 977) % V;  // distinct for V > 8·977 or coprime steps
        // frequency / presence on two rows in three (presence alone on some), counts 1..6; the first two
        // tokens are also the repetition penalty's
        s->frequency_penalty = r % 3 == 1 ? 0.7f : r % 3 == 2 ? -0.3f * (r % 2) : 0.0f, s->presence_penalty = r % 3 ? 0.45f : 0.0f;
        s->counted = cnt_tok + 6 * r, s->counts = cnt + 6 * r, s->n_counted = 6;
        for (int k = 0; k < 6; k++) {
            int t = k < 2 ? pen[8 * r + k] : (r * 57 + k * 1231 + 5) % V, dup = 1;
            while (dup) {  // distinct within the row, as sampler_counted lists them
                dup = 0;
                for (int j = 0; j < k; j++) dup |= cnt_tok[6 * r + j] == t;
                if (dup) t = (t + 1) % V;
            }
            cnt_tok[6 * r + k] = t, cnt[6 * r + k] = k + 1;
        }
        memcpy(ref + (size_t)r * V, x + (size_t)r * V, sizeof(float) * V);
        if (s->repeat_penalty != 1.0f)
            for (int k = 0; k < 8; k++) {
                float *l = &ref[(size_t)r * V + pen[8 * r + k]];
                *l = *l > 0 ? *l / s->repeat_penalty : *l * s->repeat_penalty;
            }
        k_penalize_counts(ref + (size_t)r * V, s->counted, s->counts, s->n_counted, s->frequency_penalty, s->presence_penalty);
    }
    float *d = up(x, sizeof(float) * n_rows * V);
    check_rc(kc_sample(picked, d, n_rows, V, rows), "sample");
    float *back = down(d, (size_t)n_rows * V);
    int same = 0, host = 0, penalised = 0;
    for (int r = 0; r < n_rows; r++) {
        const KcSampleRow *s = &rows[r];
        penalised += !memcmp(back + (size_t)r * V, ref + (size_t)r * V, sizeof(float) * V);  // the penalties, bit for bit
        int want = k_sample_row(ref + (size_t)r * V, V, s->temperature, s->top_k, s->top_p, s->min_p, s->u);
        if (picked[r] == -1) {  // left to the host: legitimate only for a sampled row with > 4,096 candidates
            int cand = 0, best = k_argmax(ref + (size_t)r * V, V);
            for (int v = 0; v < V; v++) cand += ref[(size_t)r * V + v] >= ref[(size_t)r * V + best] - K_SAMPLE_FLOOR * s->temperature;
            host++;
            same += s->temperature > 0 && cand > 4096 && !memcmp(back + (size_t)r * V, ref + (size_t)r * V, sizeof(float) * V);
        } else {
            same += picked[r] == want;
        }
    }
    g_checks++;
    printf("%s sample [%d rows x %d]%s: %d/%d picks equal the CPU's (%d left to the host)\n", same == n_rows ? "ok  " : "FAIL", n_rows, V,
           grid ? ", ties" : "", same, n_rows, host);
    if (same != n_rows) g_fail++;
    g_checks++;
    printf("%s sample [%d rows x %d]: %d/%d penalised rows equal the CPU's\n", penalised == n_rows ? "ok  " : "FAIL", n_rows, V, penalised,
           n_rows);
    if (penalised != n_rows) g_fail++;
    free(x), free(ref), free(rows), free(pen), free(cnt_tok), free(cnt), free(picked), free(back);
    kc_free(d);
}

// The sum of squares (the gradient norm) over one block's worth and over many blocks, against a double sum; the
// same input twice gives the same bits.
static void test_sumsq(size_t n) {
    float *x = rnd(n + 1, 1), *g = up(x, sizeof(float) * (n + 1));  // (one more: a buffer even for n 0)
    long double acc = 0;  // (a long double sum: a plain double one of 2^26 terms drifts by more than the bound)
    for (size_t i = 0; i < n; i++) acc += (long double)x[i] * x[i];
    double ref = (double)acc, a = -1, b = -2;
    check_rc(kc_sumsq(g, n, &a), "sumsq");
    check_rc(kc_sumsq(g, n, &b), "sumsq");
    char name[96];
    snprintf(name, sizeof name, "sumsq of %zu floats = the double sum, the same bits twice", n);
    check(fabs(a - ref) <= 1e-12 * (ref > 1 ? ref : 1) && a == b, name);
    if (!(fabs(a - ref) <= 1e-12 * (ref > 1 ? ref : 1))) printf("     sumsq %.17g, reference %.17g\n", a, ref);
    free(x), kc_free(g);
}

// cuBLASLt's plans: one per bf16 GEMM shape, made on its first call and reused after (the same bits), a new shape
// making one more.
static void test_lt_plans(void) {
    int T = 13, in = 72, out = 40;
    float *x = rnd((size_t)(T + 1) * in, 1), *W = rnd((size_t)out * in, 0.1f);
    uint16_t *W16 = bf16_bits(W, (size_t)out * in);
    float *gx = up(x, sizeof(float) * (T + 1) * in), *gy1 = poisoned((size_t)(T + 1) * out), *gy2 = poisoned((size_t)(T + 1) * out);
    void *gW = up(W16, sizeof(uint16_t) * out * in);
    int m0 = kc_lt_plans_made();
    check_rc(kc_lora_linear(gy1, NULL, gx, NULL, gW, LD_BF16, NULL, NULL, NULL, 0, T, in, out, 0), "lora_linear bf16");
    int m1 = kc_lt_plans_made();
    check_rc(kc_lora_linear(gy2, NULL, gx, NULL, gW, LD_BF16, NULL, NULL, NULL, 0, T, in, out, 0), "lora_linear bf16");
    int m2 = kc_lt_plans_made();
    float *y1 = down(gy1, (size_t)T * out), *y2 = down(gy2, (size_t)T * out);
    check_rc(kc_lora_linear(gy2, NULL, gx, NULL, gW, LD_BF16, NULL, NULL, NULL, 0, T + 1, in, out, 0), "lora_linear bf16");
    int m3 = kc_lt_plans_made();
    char name[160];
    snprintf(name, sizeof name, "cuBLASLt plans: a new shape makes one (%d), the same shape again none (%d), another one (%d)", m1 - m0,
             m2 - m1, m3 - m2);
    check(m1 - m0 == 1 && m2 == m1 && m3 - m2 == 1, name);
    check(memcmp(y1, y2, sizeof(float) * T * out) == 0, "cuBLASLt plans: the reused plan gives the first call's bits");
    free(x), free(W), free(W16), free(y1), free(y2);
    kc_free(gx), kc_free(gy1), kc_free(gy2), kc_free(gW);
}

int main(void) {
    if (ld_cuda_device_count() == 0) {
        printf("test_cuda_kernels: skipped: no CUDA device here (the gpu-labelled tests run on a GPU machine: tools/gpu_check.sh)\n");
        return 77;
    }
    char dev[256];
    ld_cuda_device_describe(0, dev, sizeof dev);
    printf("device: %s\n", dev);
    size_t sumsq_sizes[] = {0, 1, 300, 65536, 65537, 2500001, ((size_t)1 << 26) + 12345};  // (the last: over 1,024 blocks)
    for (size_t i = 0; i < sizeof sumsq_sizes / sizeof sumsq_sizes[0]; i++) test_sumsq(sumsq_sizes[i]);
    test_lt_plans();
    test_rmsnorm(1, 64, 0);
    test_rmsnorm(37, 576, 0);
    test_rmsnorm(129, 2048, 1);
    test_rmsnorm(5, 1000, 1);
    test_add_rmsnorm(1, 64, 0);
    test_add_rmsnorm(37, 576, 1);
    test_add_rmsnorm(5, 1000, 0);
    test_rope(1, 3, 1, 64);
    test_rope(33, 9, 3, 64);
    test_rope(17, 4, 4, 128);
    test_rope(9, 8, 2, 256);
    for (int bf16 = 0; bf16 < 2; bf16++)  // (rows distinct: 7 and the n_pages·16 rows share no factor)
        test_rope_kv_write(1, 3, 1, 64, bf16), test_rope_kv_write(33, 9, 3, 64, bf16), test_rope_kv_write(17, 4, 4, 128, bf16);
    test_elementwise(1);
    test_elementwise(1000003);
    test_adamw(12345);
    test_bf16_convert(100003);
    test_bf16_convert_runs();
    int hds[] = {64, 128, 256};
    for (int i = 0; i < 3; i++) {
        test_attention(45, 8, 2, hds[i], 0, 0.0f, 0);
        test_attention(45, 8, 2, hds[i], 4, 0.0f, 0);
        test_attention(33, 4, 4, hds[i], 0, 50.0f, 0);
        test_attention(13, 6, 1, hds[i], 0, 0.0f, 1);
        test_attention(13, 6, 3, hds[i], 9, 30.0f, 1);
    }
    for (int i = 0; i < 3; i++) {
        test_attention_backward(37, 9, 8, 2, hds[i], 0, 0.0f);
        test_attention_backward(37, 9, 4, 4, hds[i], 5, 30.0f);
    }
    test_attention(100, 4, 1, 64, 0, 0.0f, 0);  // several query and key tiles
    test_attention_mma_sharp(200, 150, 4, 2, 64);
    test_attention_mma_sharp(130, 130, 2, 1, 16);
    test_attention(70, 4, 2, 32, 0, 0.0f, 0);  // (the tensor-core kernel's other head dims)
    test_attention(70, 4, 2, 16, 3, 20.0f, 0);
    test_attention(40, 4, 2, 80, 0, 0.0f, 0);  // (a head_dim it does not take: the fp32 kernel, bf16 out)
    // prefills in 100-row slots: query tiles straddle two sequences, and walk past the NaN rows between them
    test_attention(111, 4, 2, 64, 0, 0.0f, 2);
    test_attention(111, 4, 2, 16, 20, 50.0f, 2);
    // decoding's blocks: a block per (token, kv head, up to 8 of its query heads), and splits of the keys while the
    // grid has fewer than 512 blocks: up to 16 splits of 700+ keys (64 at least each), groups of 16 and 12 heads
    // in two blocks, none split (600 blocks)
    test_attention(3, 8, 2, 64, 0, 0.0f, 3);
    test_attention(2, 9, 3, 128, 256, 30.0f, 3);
    test_attention(2, 16, 1, 64, 0, 0.0f, 3);
    test_attention(2, 12, 1, 64, 0, 0.0f, 3);  // a group of 12: blocks of 8 and 4 heads
    test_attention_paged(13, 6, 3, 64, 9, 30.0f, 1);
    test_attention_paged(111, 4, 2, 64, 20, 50.0f, 2);
    test_attention_paged(2, 9, 3, 64, 0, 0.0f, 3);
    test_attention(300, 4, 2, 64, 0, 0.0f, 1);
    test_attention_backward(100, 100, 4, 1, 64, 0, 0.0f);  // one long record: several key tiles per query tile
    test_attention_backward(150, 70, 6, 3, 16, 20, 50.0f);  // the tiny models' head_dim; window across tiles
    test_attention_backward(200, 130, 4, 2, 32, 0, 0.0f);  // (several own-row blocks and tiles on tensor cores)
    test_attention_backward(140, 100, 4, 2, 256, 30, 0.0f);  // (head_dim 256's warp pairs over several blocks and tiles)
    test_attention_small_card(dev);
    test_attention_backward(90, 90, 4, 2, 80, 0, 0.0f);  // (a head_dim they do not take: the fp32 passes, bf16 dv)
    test_embedding(7, 320, 64, 1.0f);
    test_dropout_rows(100000, 50);
    test_embedding(300, 97, 576, 24.0f);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        // up to 256 tokens and m·r up to 256: the fused low-rank kernels (lora_lowrank.cu); past either, cuBLAS's
        test_lora_linear(1, 64, 96, 4, bf16);
        test_lora_linear(37, 576, 1536, 8, bf16);
        test_lora_linear(130, 257, 191, 16, bf16);
        test_lora_linear(300, 130, 70, 8, bf16);
        test_lora_linears(37, 576, 8, bf16, 3, 5);
        test_lora_linears(20, 100, 128, bf16, 3, 5);
        test_lora_linears(37, 96, 160, bf16, 3, 5);
        test_lora_linears(300, 96, 8, bf16, 3, 5);
        // the fused low-rank kernels at their bounds: 4 adapters and m·r 256, 3 adapters and 256 tokens, 1 of rank 256
        test_lora_linears(40, 96, 16, bf16, 4, 15);
        test_lora_linears(40, 96, 64, bf16, 4, 15);
        test_lora_linears(256, 64, 16, bf16, 3, 7);
        test_lora_linears(33, 64, 256, bf16, 2, 2);
        test_linear_cross_entropy(37, 64, 1000, 0.0f, 8, bf16);
        test_linear_cross_entropy(37, 64, 1000, 30.0f, 5, bf16);
        test_linear_cross_entropy(19, 576, 49152, 0.0f, 6, bf16);
        test_linear_cross_entropy(3, 96, 257, 0.0f, 64, bf16);
    }
    test_sample(60, 1000, 6.0f, 0);
    test_sample(60, 1000, 6.0f, 1);
    test_sample(24, 49152, 100.0f, 0);
    test_sample(12, 262144, 400.0f, 0);
    test_sample(6, 9, 2.0f, 1);
    printf("%d passed, %d failed\n", g_checks - g_fail, g_fail);
    return g_fail ? 1 : 0;
}
