// Per-kernel speed on the GPU against the card's own ceilings, measured in the same run: first the ceilings — the
// bf16 GEMM rate (cuBLASLt, through kc_lora_linear with no adapter) and the device-to-device copy bandwidth — then
// the kernels on the Llama-3.2-1B LoRA training shape (seq 2048 × batch 8, 32/8 heads of 64, dim 2048, ffn 8192):
// attention forward and backward, the fp32 tiles and the tensor-core ones (FLOP/s, as a share of the GEMM rate),
// and the bandwidth-bound ops (GB/s, as a share of the copy's). Attention counts the FlashAttention way: 4·hd
// FLOPs a (query, key, head) seen going forward, 10·hd going back (the backward's five products; ours recomputes
// two more, not counted). One JSON line per row, then the table. Needs only the kernels and cuBLAS, so
// tools/gpu_check.sh --bench builds it on the GPU machine.
// Usage: bench_kernels [--quick]  (--quick: small shapes, for a smoke run on the CUDA emulator: bench_kernels_emu)
#define _POSIX_C_SOURCE 200809L  // clock_gettime
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_device.h"
#include "kernels_cuda.h"

typedef struct {
    int T, rec, Hq, Hkv, hd, D, F, reps;
} Shape;

static const Shape FULL = {8 * 2048, 2048, 32, 8, 64, 2048, 8192, 10}, QUICK = {256, 128, 4, 2, 64, 256, 512, 1};

static void *dev(size_t bytes) {
    void *p = kc_alloc(bytes);
    if (!p) {
        fprintf(stderr, "bench_kernels: device memory (%zu bytes): %s\n", bytes, kc_last_error());
        exit(1);
    }
    return p;
}

static float *dev_random(size_t n, float scale, unsigned seed) {
    float *h = malloc(sizeof(float) * n), *d = dev(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) seed = seed * 1103515245u + 12345u, h[i] = ((float)(seed >> 8) / 16777216.0f * 2 - 1) * scale;
    if (kc_upload(d, h, sizeof(float) * n)) fprintf(stderr, "bench_kernels: upload: %s\n", kc_last_error()), exit(1);
    free(h);
    return d;
}

static void ok(int rc, const char *what) {
    if (rc || kc_sync()) fprintf(stderr, "bench_kernels: %s: %s\n", what, kc_last_error()), exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Seconds per call of run(ctx): one warm-up call, then reps timed together.
typedef int (*Run)(void *ctx);
static double per_call(Run run, void *ctx, int reps, const char *what) {
    ok(run(ctx), what);
    double t0 = now();
    for (int i = 0; i < reps; i++)
        if (run(ctx)) ok(-1, what);
    ok(0, what);
    return (now() - t0) / reps;
}

typedef struct {
    const char *name, *unit;  // unit: "TFLOP/s" or "GB/s"
    double rate, ceiling, seconds;
} Row;
static Row g_rows[16];
static int g_n;

static void report(const char *name, const char *unit, double amount, double seconds, double ceiling) {
    Row r = {name, unit, amount / seconds / (strcmp(unit, "GB/s") ? 1e12 : 1e9), ceiling, seconds};
    g_rows[g_n++] = r;
    printf("{\"kernel\": \"%s\", \"%s\": %.2f, \"of_ceiling\": %.3f, \"ms\": %.3f}\n", name, unit, r.rate, ceiling > 0 ? r.rate / ceiling : 1.0,
           seconds * 1e3);
}

// ---- the ceilings ----
typedef struct {
    float *y, *x;
    uint16_t *x16, *w16;
    int T, in, out;
} Gemm;
static int run_gemm(void *c) {
    Gemm *g = c;
    return kc_lora_linear(g->y, NULL, g->x, g->x16, g->w16, LD_BF16, NULL, NULL, NULL, 0.0f, g->T, g->in, g->out, 0);
}
typedef struct {
    float *dst, *src;
    size_t n;
} Copy;
static int run_copy(void *c) { return kc_copy(((Copy *)c)->dst, ((Copy *)c)->src, ((Copy *)c)->n); }

// ---- attention ----
typedef struct {
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    uint16_t *out16, *dv16;
    int *lo, *hi, T, Hq, Hkv, hd, bf16;
} Att;
static int run_att(void *c) {
    Att *a = c;
    KvRows kv = {a->k, a->v, LD_F32, NULL, 0};
    return kc_attention_packed(a->out, a->bf16 ? a->out16 : NULL, a->lse, a->q, kv, a->lo, a->hi, a->T, a->Hq, a->Hkv, a->hd,
                               1.0f / sqrtf((float)a->hd), 0.0f);
}
static int run_att_bwd(void *c) {
    Att *a = c;
    return kc_attention_backward(a->dq, a->dk, a->dv, a->bf16 ? a->dv16 : NULL, a->dout, a->q, a->k, a->v, a->out, a->lse, a->lo, a->hi,
                                 a->T, a->Hq, a->Hkv, a->hd, 1.0f / sqrtf((float)a->hd), 0.0f);
}

static void bench_attention(const Shape *s, double gemm_tflops) {
    size_t nq = (size_t)s->T * s->Hq * s->hd, nk = (size_t)s->T * s->Hkv * s->hd;
    Att a = {dev_random(nq, 1, 1), dev_random(nk, 1, 2), dev_random(nk, 1, 3), dev(4 * nq), dev(4 * (size_t)s->T * s->Hq),
             dev_random(nq, 1, 4), dev(4 * nq), dev(4 * nk), dev(4 * nk), dev(2 * nq), dev(2 * nk), dev(4 * (size_t)s->T),
             dev(4 * (size_t)s->T), s->T, s->Hq, s->Hkv, s->hd, 0};
    int *lo = malloc(sizeof(int) * s->T), *hi = malloc(sizeof(int) * s->T);
    double pairs = 0;  // (query, key) pairs seen, over every head
    for (int t = 0; t < s->T; t++) lo[t] = t / s->rec * s->rec, hi[t] = t, pairs += (double)(hi[t] - lo[t] + 1) * s->Hq;
    ok(kc_upload(a.lo, lo, sizeof(int) * s->T) || kc_upload(a.hi, hi, sizeof(int) * s->T), "ranges");
    const char *const fwd[] = {"attention forward, fp32 tiles", "attention forward, tensor cores"},
                      *bwd[] = {"attention backward, fp32 tiles", "attention backward, tensor cores"};
    for (int bf16 = 0; bf16 < 2; bf16++) {
        a.bf16 = bf16;
        report(fwd[bf16], "TFLOP/s", 4.0 * s->hd * pairs, per_call(run_att, &a, s->reps, fwd[bf16]), gemm_tflops);
        report(bwd[bf16], "TFLOP/s", 10.0 * s->hd * pairs, per_call(run_att_bwd, &a, s->reps, bwd[bf16]), gemm_tflops);
    }
    void *all[] = {a.q, a.k, a.v, a.out, a.lse, a.dout, a.dq, a.dk, a.dv, a.out16, a.dv16, a.lo, a.hi};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kc_free(all[i]);
    free(lo), free(hi);
}

// ---- bandwidth-bound ops ----
typedef struct {
    float *y, *x, *w;  // rmsnorm: x [T, D] normed by w [D]; gated: gate x and up w, each [T, D]
    uint16_t *y16;
    int T, D;
} Ew;
static int run_rmsnorm(void *c) {
    Ew *e = c;
    return kc_rmsnorm(e->y, e->y16, e->x, e->w, e->T, e->D, 1e-5f, 0);
}
static int run_gated(void *c) {
    Ew *e = c;
    return kc_gated(ACT_SILU, e->y, e->y16, e->x, e->w, (size_t)e->T * e->D);
}

int main(int argc, char **argv) {
    const Shape *s = argc > 1 && !strcmp(argv[1], "--quick") ? &QUICK : &FULL;
    if (ld_cuda_device_count() == 0) {
        fprintf(stderr, "bench_kernels: no CUDA device\n");
        return 1;
    }
    char name[256];
    ld_cuda_device_describe(0, name, sizeof name);
    printf("{\"device\": \"%s\", \"shape\": \"%s\"}\n", name, s == &FULL ? "Llama-3.2-1B, seq 2048 x batch 8" : "quick");
    size_t n = (size_t)s->T * s->D, nf = (size_t)s->T * s->F, nw = (size_t)s->F * s->D;
    float *w = dev_random(nw, 0.05f, 9);
    Gemm g = {dev(4 * nf), dev_random(n, 1, 5), dev(2 * n), dev(2 * nw), s->T, s->D, s->F};
    ok(kc_to_bf16(g.x16, g.x, n) || kc_to_bf16(g.w16, w, nw), "bf16 operands");
    report("ceiling: bf16 GEMM (cuBLASLt)", "TFLOP/s", 2.0 * s->T * s->D * s->F, per_call(run_gemm, &g, s->reps, "GEMM"), 0);
    double gemm = g_rows[g_n - 1].rate;
    Copy c = {g.y, dev_random(nf, 1, 6), nf};
    report("ceiling: device-to-device copy", "GB/s", 8.0 * nf, per_call(run_copy, &c, s->reps, "copy"), 0);
    double copy = g_rows[g_n - 1].rate;
    bench_attention(s, gemm);
    Ew norm = {g.y, g.x, dev_random(s->D, 1, 7), g.x16, s->T, s->D};
    report("rmsnorm (fp32 out + bf16 out)", "GB/s", 10.0 * n + 4.0 * s->D, per_call(run_rmsnorm, &norm, s->reps, "rmsnorm"), copy);
    Ew gated = {g.y, c.src, dev_random(nf, 1, 8), dev(2 * nf), s->T, s->F};
    report("gated SiLU (fp32 out + bf16 out)", "GB/s", 14.0 * nf, per_call(run_gated, &gated, s->reps, "gated"), copy);
    printf("\n%-36s %12s %12s %10s\n", "kernel", "rate", "of ceiling", "ms");
    for (int i = 0; i < g_n; i++)
        printf("%-36s %7.2f %-7s %9.1f%% %10.3f\n", g_rows[i].name, g_rows[i].rate, g_rows[i].unit,
               g_rows[i].ceiling > 0 ? 100 * g_rows[i].rate / g_rows[i].ceiling : 100.0, g_rows[i].seconds * 1e3);
    return 0;
}
