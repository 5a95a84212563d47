#include "train_gpu.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifndef LLAMADUO_HAVE_CUDA

GpuTrainer *gpu_trainer_new(const Model *m, const Lora *lora, LdDtype wt) {
    (void)m, (void)lora, (void)wt;
    ld_set_error("this build has no CUDA backend (nvcc was not found when it was configured)");
    return NULL;
}
void gpu_trainer_free(GpuTrainer *g) { (void)g; }
void gpu_trainer_recompute(GpuTrainer *g, int on) { (void)g, (void)on; }
int gpu_trainer_distribute(GpuTrainer *g, struct Dist *d, int nccl, int zero) { return (void)g, (void)d, (void)nccl, (void)zero, -1; }
int gpu_trainer_overlap(GpuTrainer *g, double mib) { return (void)g, (void)mib, 0; }
void gpu_trainer_sum_in_backward(GpuTrainer *g) { (void)g; }
const char *gpu_trainer_collectives(const GpuTrainer *g, const struct Dist *d) { return (void)g, (void)d, "none"; }
size_t gpu_trainer_state_floats(const GpuTrainer *g) { return (void)g, 0; }
int gpu_trainer_sharded(const GpuTrainer *g) { return (void)g, 0; }
float gpu_trainer_loss_and_grad(GpuTrainer *g, const TrainBatch *b, int *n, int training, uint64_t seed) {
    return (void)g, (void)b, (void)n, (void)training, (void)seed, NAN;
}
int gpu_trainer_zero_grad(GpuTrainer *g) { return (void)g, -1; }
int gpu_trainer_scale_grad(GpuTrainer *g, float s) { return (void)g, (void)s, -1; }
int gpu_trainer_sum_grad(GpuTrainer *g) { return (void)g, -1; }
double gpu_trainer_adamw(GpuTrainer *g, float lr, float b1, float b2, float eps, float wd, float mn) {
    return (void)g, (void)lr, (void)b1, (void)b2, (void)eps, (void)wd, (void)mn, NAN;
}
int gpu_trainer_values(GpuTrainer *g, const Param *host, int n) { return (void)g, (void)host, (void)n, -1; }
int gpu_trainer_download(GpuTrainer *g, Lora *l) { return (void)g, (void)l, -1; }
int gpu_trainer_write_state(GpuTrainer *g, AdamW *o, const char *path) { return (void)g, (void)o, (void)path, -1; }
int gpu_trainer_read_state(GpuTrainer *g, AdamW *o, const char *path) { return (void)g, (void)o, (void)path, -1; }

#else

#include "cuda_device.h"
#include "dist.h"
#include "gpu_weights.h"
#include "kernels_cuda.h"

struct GpuTrainer {
    const Model *m;
    int full, step;  // step: AdamW steps taken
    float dropout;
    GpuWeights *base;  // LoRA: the frozen base
    Lora *P, *dP;  // LoRA: the adapter and its gradients (views of values and grads)
    Model *W, *dW;  // full fine-tuning: every weight and its gradient (views of values and grads)
    Model *W16;  // full fine-tuning in bf16: the forward's weights, each matrix a bf16 copy of its fp32 master in W
    void *w16;  // those copies end to end
    float *inv_freq[2];  // full fine-tuning: RoPE's global and local tables
    Param *params;  // [n_params] views of values and grads, lora_params() / model_params() order
    int n_params;
    float *values, *grads;  // [n + PAD_ROOM]: every trained parameter end to end, zeros after the n-th
    float *m1, *m2;  // [hi - lo] AdamW's moments of this rank's chunk (all of it without ZeRO-1), made at first use
    size_t n, n_pad, lo, hi;  // n_pad: n rounded up to equal chunks (ZeRO-1)
    Dist *dist;
    KcComm *comm;  // the data-parallel ranks' GPUs (NCCL), or NULL
    int zero, rank, world;
    // The overlap (gpu_trainer_overlap): the buckets in the order the backward pass finishes them, each a few spans
    // [a, b) of the buffers; started, how many of them this step has started; armed: the next batch starts them.
    struct Bucket *buckets;
    size_t (*spans)[2];
    int n_buckets, n_spans, started, armed;
    int recompute;  // activation checkpointing
};

typedef struct Bucket {
    int after;  // started once the pass has finished this stage: n_layers - Param.layer (0 the head, n_layers + 1 the embedding)
    int span0, n_spans;  // its spans, spans[span0 ..]
} Bucket;

static int failed(const char *what) {
    char why[512];
    snprintf(why, sizeof why, "%s", kc_last_error());
    ld_set_error("%s: %s", what, why);
    return -1;
}

static float *zeros(size_t n) {
    float *d = kc_alloc(sizeof(float) * (n ? n : 1));
    if (d && kc_fill(d, 0, n)) kc_free(d), d = NULL;
    return d;
}

// Room past the parameters for ZeRO-1's equal chunks (n rounded up to a multiple of the ranks), so that
// sharding never moves the buffers: up to PAD_ROOM + 1 ranks.
#define PAD_ROOM 4096

// The parameters' buffers, the views and the parameter list over them (like: the adapter's shape).
static int lay_out(GpuTrainer *g, const Lora *like) {
    if (!(g->values = zeros(g->n + PAD_ROOM)) || !(g->grads = zeros(g->n + PAD_ROOM))) return failed("the trained parameters on the GPU");
    if (g->full) {
        g->W = gpu_model_view(g->m, g->values), g->dW = gpu_model_view(g->m, g->grads);
        g->n_params = model_params(g->W, g->dW, &g->params);
    } else {
        g->P = gpu_lora_view(like, g->values), g->dP = gpu_lora_view(like, g->grads);
        g->n_params = lora_params(g->P, g->dP, &g->params);
    }
    g->n_pad = g->n, g->lo = 0, g->hi = g->n;
    return 0;
}

// AdamW's moments of elements [lo, hi), zeroed, once: made at first use, after ZeRO-1 has chosen the chunk.
static int have_moments(GpuTrainer *g) {
    if (g->m1 && g->m2) return 0;
    if (!g->m1 && !(g->m1 = zeros(g->hi - g->lo))) return failed("AdamW's state on the GPU");
    if (!(g->m2 = zeros(g->hi - g->lo))) return failed("AdamW's state on the GPU");
    return 0;
}

static float *upload_table(const float *h, size_t n, int *err) {
    if (!h || *err) return NULL;
    float *d = kc_alloc(sizeof(float) * n);
    if (!d || kc_upload(d, h, sizeof(float) * n)) *err = 1;
    return d;
}

// Full fine-tuning in bf16: the matrices' copies, refreshed from their masters after every change to them (in
// launches of KC_CONVERT_RUNS matrices).
static int refresh_bf16(GpuTrainer *g) {
    if (!g->W16) return 0;
    ModelTensor *master, *copy;
    int n = model_tensors(g->W, &master), m = 0;
    model_tensors(g->W16, &copy);
    LdConvertRun *runs = ld_xcalloc((size_t)n, sizeof *runs);
    for (int i = 0; i < n; i++)
        if (master[i].lin)
            runs[m++] = (LdConvertRun){(void *)copy[i].lin->data, master[i].lin->data, (size_t)(master[i].rows * master[i].cols)};
    int rc = kc_to_bf16_runs(runs, m);
    free(runs), free(master), free(copy);
    return rc ? failed("the weights' bf16 copies") : 0;
}

static size_t aligned_bf16_bytes(const ModelTensor *t) { return (2 * (size_t)(t->rows * t->cols) + 255) / 256 * 256; }

// A view like W whose matrices are bf16 copies (the norms and biases stay W's fp32 masters).
static int make_bf16_copies(GpuTrainer *g) {
    ModelTensor *t;
    g->W16 = gpu_model_view(g->m, g->values);
    int n = model_tensors(g->W16, &t);
    size_t total = 0;  // bytes, each copy starting 256-aligned as cuBLASLt's heuristic assumes
    for (int i = 0; i < n; i++) total += t[i].lin ? aligned_bf16_bytes(&t[i]) : 0;
    char *at = g->w16 = kc_alloc(total ? total : 1);
    for (int i = 0; at && i < n; i++)
        if (t[i].lin) {
            *t[i].lin = (Linear){at, LD_BF16, 2 * (size_t)t[i].cols};
            at += aligned_bf16_bytes(&t[i]);
        }
    free(t);
    if (g->m->cfg.tied_embeddings) g->W16->lm_head = g->W16->embed;
    return g->w16 ? 0 : failed("the weights' bf16 copies");
}

// The base (LoRA) or RoPE's tables (full fine-tuning), then the trained values from the host's parameters.
static int upload(GpuTrainer *g, LdDtype wt, const Param *host) {
    const Model *m = g->m;
    if (g->full) {
        int err = 0, half = m->cfg.head_dim / 2;
        g->inv_freq[0] = upload_table(m->inv_freq_global, (size_t)half, &err);
        g->inv_freq[1] = upload_table(m->inv_freq_local, (size_t)half, &err);
        if (err || (wt == LD_BF16 && make_bf16_copies(g))) return failed("uploading the model to the GPU");
    } else if (!(g->base = gpu_weights_upload(m, wt))) {
        return -1;
    }
    for (int k = 0; k < g->n_params; k++)
        if (kc_upload(g->params[k].p, host[k].p, sizeof(float) * host[k].n)) return failed("uploading the trained weights to the GPU");
    return refresh_bf16(g);
}

GpuTrainer *gpu_trainer_new(const Model *m, const Lora *lora, LdDtype wt) {
    if (ld_cuda_device_count() == 0) {
        ld_set_error("no CUDA device found");
        return NULL;
    }
    GpuTrainer *g = ld_xcalloc(1, sizeof *g);
    g->m = m, g->full = !lora, g->dropout = lora ? lora->dropout : 0, g->world = 1;
    Param *host;  // (the host's own values: read only)
    int n = lora ? lora_params((Lora *)lora, (Lora *)lora, &host) : model_params((Model *)m, (Model *)m, &host);
    for (int k = 0; k < n; k++) g->n += host[k].n;
    int rc = lay_out(g, lora) || upload(g, wt, host);
    free(host);
    if (rc) {
        gpu_trainer_free(g);
        return NULL;
    }
    return g;
}

void gpu_trainer_free(GpuTrainer *g) {
    if (!g) return;
#ifdef LLAMADUO_HAVE_NCCL
    kc_comm_free(g->comm);
#endif
    gpu_view_free(g->P, g->W), gpu_view_free(g->dP, g->dW), gpu_view_free(NULL, g->W16);
    kc_free(g->w16);
    gpu_weights_free(g->base);
    kc_free(g->values), kc_free(g->grads), kc_free(g->m1), kc_free(g->m2), kc_free(g->inv_freq[0]), kc_free(g->inv_freq[1]);
    free(g->buckets), free(g->spans), free(g->params), free(g);
}

static int join_nccl(GpuTrainer *g, Dist *d) {
#ifdef LLAMADUO_HAVE_NCCL
    unsigned char id[KC_COMM_ID_BYTES] = {0};
    if (g->rank == 0 && kc_comm_id(id)) return failed("NCCL");
    if (dist_bcast(d, id, sizeof id, "NCCL's communicator id")) return -1;
    if (!(g->comm = kc_comm_join(id, g->world, g->rank, dist_timeout_s(d)))) return failed("NCCL");
#else
    (void)g, (void)d;
#endif
    return 0;
}

int gpu_trainer_distribute(GpuTrainer *g, Dist *d, int nccl, int zero) {
    const DistPlace *at = dist_place(d);
    g->dist = d, g->rank = at->rank, g->world = at->world;
    if (nccl && join_nccl(g, d)) return -1;
    if (!(g->zero = zero && g->world > 1 && g->comm)) return 0;
    if (g->world > PAD_ROOM + 1) return ld_set_error("ZeRO-1 on the GPU takes at most %d ranks", PAD_ROOM + 1), -1;
    size_t w = (size_t)g->world;
    g->n_pad = (g->n + w - 1) / w * w;  // equal chunks, as NCCL's reduce-scatter takes them
    g->lo = g->rank * g->n_pad / w, g->hi = (g->rank + 1) * g->n_pad / w;
    return 0;
}

int gpu_trainer_sharded(const GpuTrainer *g) { return g->zero; }

void gpu_trainer_recompute(GpuTrainer *g, int on) { g->recompute = on; }

// Parameter k's elements as the open bucket's last span (from span0 on), merged with the span before when they touch.
static void add_span(GpuTrainer *g, int k, int span0) {
    size_t a = (size_t)(g->params[k].p - g->values), b = a + g->params[k].n;
    size_t(*last)[2] = g->n_spans > span0 ? &g->spans[g->n_spans - 1] : NULL;
    if (last && (*last)[1] == a)
        (*last)[1] = b;
    else if (last && (*last)[0] == b)
        (*last)[0] = a;
    else
        g->spans[g->n_spans][0] = a, g->spans[g->n_spans++][1] = b;
}

int gpu_trainer_overlap(GpuTrainer *g, double mib) {
    if (!g->comm) return 0;
    int L = g->m->cfg.n_layers, span0 = 0;
    size_t cap = (size_t)(mib * (1 << 20) / sizeof(float)), filled = 0;  // floats
    g->spans = ld_xcalloc((size_t)g->n_params, sizeof *g->spans);
    g->buckets = ld_xcalloc((size_t)L + 2, sizeof *g->buckets);
    for (int stage = 0; stage <= L + 1; stage++) {
        for (int k = g->n_params - 1; k >= 0; k--)  // from the top down, as the stages come, so that touching spans merge
            if (L - g->params[k].layer == stage) add_span(g, k, span0), filled += g->params[k].n;
        if (g->n_spans > span0 && (filled >= cap || stage == L + 1)) {
            g->buckets[g->n_buckets++] = (Bucket){stage, span0, g->n_spans - span0};
            span0 = g->n_spans, filled = 0;
        }
    }
    return g->n_buckets;
}

void gpu_trainer_sum_in_backward(GpuTrainer *g) { g->armed = g->n_buckets > 0; }

// Bucket k's sum started on the communicator's stream (ZeRO-1: each element onto the rank whose chunk holds it).
static int start_bucket(GpuTrainer *g, const Bucket *k) {
#ifndef LLAMADUO_HAVE_NCCL
    return (void)g, (void)k, -1;  // (no communicator, so no buckets)
#else
    const size_t(*spans)[2] = g->spans + k->span0;
    if (g->zero) return kc_comm_reduce_start(g->comm, g->grads, spans, k->n_spans, g->n_pad / (size_t)g->world);
    float **bufs = ld_xmalloc(sizeof(float *) * (size_t)k->n_spans);
    size_t *n = ld_xmalloc(sizeof(size_t) * (size_t)k->n_spans);
    for (int i = 0; i < k->n_spans; i++) bufs[i] = g->grads + spans[i][0], n[i] = spans[i][1] - spans[i][0];
    int rc = kc_comm_sum_start(g->comm, bufs, n, k->n_spans);
    free(bufs), free(n);
    return rc;
#endif
}

// Every bucket whose stage the pass has finished (up to `stage`), in the plan's order: every rank starts the same
// buckets in the same order, whenever it gets to them. 0, or -1 with kc_last_error().
static int start_buckets(GpuTrainer *g, int stage) {
    while (g->started < g->n_buckets && g->buckets[g->started].after <= stage)
        if (start_bucket(g, &g->buckets[g->started++])) return -1;
    return 0;
}

static int on_grads_final(void *ctx, int layer) {
    GpuTrainer *g = ctx;
    return start_buckets(g, g->m->cfg.n_layers - layer);
}

const char *gpu_trainer_collectives(const GpuTrainer *g, const Dist *d) {
    return g->comm ? "NCCL" : !strcmp(dist_transport_name(d), "TCP") ? "TCP through host memory" : "MPI through host memory";
}

size_t gpu_trainer_state_floats(const GpuTrainer *g) { return 2 * (g->hi - g->lo); }

// Host collectives take at most INT_MAX elements at a time (MPI's counts): bigger buffers go in pieces of this.
static const size_t HOST_PIECE = (size_t)1 << 28;

int gpu_trainer_zero_grad(GpuTrainer *g) { return kc_fill(g->grads, 0, g->n_pad) ? failed("zeroing the gradients") : 0; }

int gpu_trainer_scale_grad(GpuTrainer *g, float s) { return kc_scale(g->grads, g->n_pad, s) ? failed("GPU gradient scaling") : 0; }

float gpu_trainer_loss_and_grad(GpuTrainer *g, const TrainBatch *b, int *n_counted, int training, uint64_t dropout_seed) {
    const Backend *be = &ld_backend_cuda;
    const ModelConfig *c = &g->m->cfg;
    if (train_batch_check(c, b)) return NAN;
    Transformer t = {
        .be = be, .cfg = c, .adapter = g->P, .bf16_acts = g->W16 || (g->base && g->base->wt == LD_BF16), .recompute = g->recompute};
    ModelWeights grad;
    if (g->full) {
        t.w = model_weights(g->W16 ? g->W16 : g->W), grad = model_weights(g->dW);
        t.w.inv_freq_global = g->inv_freq[0], t.w.inv_freq_local = g->inv_freq[1];
    } else {
        t.w = g->base->w;
    }
    TrainStep step = {.adapter_grad = g->dP,
                      .weight_grad = g->full ? &grad : NULL,
                      .dropout = g->dropout,
                      .dropout_seed = dropout_seed,
                      .row0 = b->row0,
                      .loss_norm = b->loss_norm,
                      .grads_final = training && g->armed ? on_grads_final : NULL,
                      .grads_final_ctx = g};
    if (training) g->armed = 0;
    TokenPlan plan;
    float loss = NAN;
    int rc = token_plan_packed(be, c, b, &plan) || transformer_loss(&t, &plan, b->targets, training ? &step : NULL, &loss, n_counted) ||
             kc_sync();
    token_plan_free(be, &plan);
    if (rc)
        failed("GPU training step");
    else if (isnan(loss))
        ld_set_error("the loss is not a number (the training diverged: a lower learning rate may help)");
    return rc ? NAN : loss;
}

// Gradients summed through host memory go a piece of this many at a time, so the host holds one piece, not a
// copy of every parameter.
static const size_t STAGE_PIECE = (size_t)1 << 24;

int gpu_trainer_sum_grad(GpuTrainer *g) {
#ifdef LLAMADUO_HAVE_NCCL
    if (g->n_buckets) {  // the ones the backward pass has not started (all of them when this rank had no tokens)
        g->armed = 0;
        int rc = start_buckets(g, INT_MAX) || kc_comm_wait(g->comm);
        g->started = 0;
        return rc ? failed("the gradients' sums during the backward pass (NCCL)") : 0;
    }
    if (g->comm) {
        int rc = g->zero ? kc_comm_reduce_scatter(g->comm, g->grads, g->n_pad / (size_t)g->world) : kc_comm_sum(g->comm, &g->grads, &g->n, 1);
        return rc ? failed(g->zero ? "the gradients' reduce-scatter (NCCL)" : "the gradients' all-reduce (NCCL)") : 0;
    }
#endif
    // through host memory (ZeRO-1 takes NCCL)
    float *piece = ld_xmalloc(sizeof(float) * (g->n < STAGE_PIECE ? (g->n ? g->n : 1) : STAGE_PIECE));
    int rc = 0;
    for (size_t at = 0; at < g->n && !rc; at += STAGE_PIECE) {
        size_t len = g->n - at < STAGE_PIECE ? g->n - at : STAGE_PIECE;
        if (kc_download(piece, g->grads + at, sizeof(float) * len)) rc = failed("staging through host memory");
        if (!rc) rc = dist_sum_f32(g->dist, piece, len, "the gradients' all-reduce");
        if (!rc && kc_upload(g->grads + at, piece, sizeof(float) * len)) rc = failed("staging through host memory");
    }
    free(piece);
    return rc;
}

// ZeRO-1, after each rank's step on its chunk: every chunk to every rank.
static int gather_values(GpuTrainer *g) {
#ifdef LLAMADUO_HAVE_NCCL
    if (g->comm) return kc_comm_all_gather(g->comm, g->values, g->n_pad / (size_t)g->world) ? failed("the weights' all-gather (NCCL)") : 0;
#endif
    return ld_set_error("ZeRO-1 on the GPU needs NCCL"), -1;
}

// The part of parameter k inside this rank's chunk: elements [*a, *b) of the buffers (empty when *a >= *b).
static void in_chunk(const GpuTrainer *g, int k, size_t *a, size_t *b) {
    size_t off = (size_t)(g->params[k].p - g->values), end = off + g->params[k].n;
    *a = off > g->lo ? off : g->lo, *b = end < g->hi ? end : g->hi;
}

double gpu_trainer_adamw(GpuTrainer *g, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm) {
    double ss;
    if (have_moments(g)) return NAN;
    if (kc_sumsq(g->grads + g->lo, g->hi - g->lo, &ss)) return failed("the gradient norm"), NAN;
    if (g->zero && dist_sum_f64(g->dist, &ss, 1, "the gradient norm's all-reduce")) return NAN;
    double norm = sqrt(ss);
    float clip = max_norm > 0 ? (float)(max_norm / (norm + 1e-6)) : 1.0f;  // torch's clip_grad_norm_
    g->step++;
    if (clip < 1.0f && kc_scale(g->grads + g->lo, g->hi - g->lo, clip)) return failed("clipping the gradient"), NAN;
    // one launch for each run of parameters that share their weight decay (a whole adapter is one run): the
    // parameters lie end to end, and AdamW is elementwise
    for (int k = 0, end; k < g->n_params; k = end) {
        for (end = k + 1; end < g->n_params && g->params[end].decay == g->params[k].decay;) end++;
        size_t a, b, a_last, b_last;
        in_chunk(g, k, &a, &b);
        in_chunk(g, end - 1, &a_last, &b_last);
        b = b_last;
        if (a >= b) continue;
        if (kc_adamw(g->values + a, g->grads + a, g->m1 + (a - g->lo), g->m2 + (a - g->lo), b - a, lr, beta1, beta2, eps,
                     g->params[k].decay ? weight_decay : 0, g->step))
            return failed("GPU AdamW step"), NAN;
    }
    return (g->zero && gather_values(g)) || refresh_bf16(g) ? NAN : norm;
}

static int same_params(const GpuTrainer *g, const Param *host, int n) {
    int same = n == g->n_params;
    for (int k = 0; k < n && same; k++) same = host[k].n == g->params[k].n;
    if (!same) ld_set_error("the host's parameters do not match the ones trained on the GPU");
    return same;
}

int gpu_trainer_values(GpuTrainer *g, const Param *host, int n) {
    if (!same_params(g, host, n)) return -1;
    for (int k = 0; k < n; k++)
        if (kc_download(host[k].p, g->params[k].p, sizeof(float) * host[k].n)) return failed("copying the trained weights from the GPU");
    return 0;
}

int gpu_trainer_download(GpuTrainer *g, Lora *lora) {
    Param *host;
    int n = lora_params(lora, lora, &host), rc = gpu_trainer_values(g, host, n);
    free(host);
    return rc;
}

// Rank 0 gets elements [a, b) of a moment (part 1: m1, 2: m2) in into[b - a], each rank sending the part of it in
// its chunk (chunks are in rank order, so the parts end to end are the whole). Every rank calls it alike.
static int gather_range(GpuTrainer *g, int part, size_t a, size_t b, float *into) {
    size_t lo = a > g->lo ? a : g->lo, hi = b < g->hi ? b : g->hi, mine = hi > lo ? hi - lo : 0,
           *each = ld_xcalloc((size_t)g->world, sizeof(size_t));
    float *piece = ld_xmalloc(sizeof(float) * (mine ? mine : 1));
    char *all = NULL;
    // the others wait for rank 0 with no deadline (it writes the file between gathers), so the gather's deadline
    // measures a rank that hung, not rank 0's disk
    if (dist_wait_for_all(g->dist, "waiting for rank 0 to write the checkpoint")) return free(piece), free(each), -1;
    int rc = mine && kc_download(piece, (part == 1 ? g->m1 : g->m2) + (lo - g->lo), sizeof(float) * mine)
                 ? failed("AdamW's state from the GPU")
                 : 0;
    if (!rc) rc = dist_gather(g->dist, piece, sizeof(float) * mine, &all, each, "gathering the optimiser's state");
    size_t got = 0;
    for (int r = 0; !rc && all && r < g->world; r++) got += each[r];
    if (!rc && all && got != sizeof(float) * (b - a))
        rc = (ld_set_error("gathering the optimiser's state: %zu bytes, not %zu", got, sizeof(float) * (b - a)), -1);
    if (!rc && all) memcpy(into, all, got);
    free(all), free(piece), free(each);
    return rc ? -1 : 0;
}

// One moment of parameter k, whole, into into[n] (rank 0): from this device, or with ZeRO-1 a piece at a time from
// every rank's chunk (the other ranks call it too, into NULL).
static int moment_of(GpuTrainer *g, int part, int k, float *into) {
    size_t off = (size_t)(g->params[k].p - g->values), n = g->params[k].n;
    if (!g->zero) return kc_download(into, (part == 1 ? g->m1 : g->m2) + off, sizeof(float) * n) ? failed("AdamW's state from the GPU") : 0;
    for (size_t at = 0; at < n; at += HOST_PIECE)
        if (gather_range(g, part, off + at, off + (n - at < HOST_PIECE ? n : at + HOST_PIECE), into ? into + at : NULL)) return -1;
    return 0;
}

static int moment_out(int part, int k, float *dst, void *ctx) { return moment_of(ctx, part, k, dst); }

int gpu_trainer_write_state(GpuTrainer *g, AdamW *opt, const char *path) {
    if (!same_params(g, opt->v, opt->n) || have_moments(g)) return -1;
    if (g->rank) {  // ZeRO-1: this rank's chunks, in the order rank 0 writes the moments
        for (int part = 1; part <= 2 && g->zero; part++)
            for (int k = 0; k < g->n_params; k++)
                if (moment_of(g, part, k, NULL)) return -1;
        return 0;
    }
    if (gpu_trainer_values(g, opt->v, opt->n)) return -1;
    opt->step = g->step;
    return adamw_save_with(opt, path, moment_out, g);
}

// The part of a moment of parameter k in this rank's chunk, from the whole all[n] to the device.
static int moment_in(int part, int k, const float *all, void *ctx) {
    GpuTrainer *g = ctx;
    size_t a, b, off = (size_t)(g->params[k].p - g->values);
    in_chunk(g, k, &a, &b);
    if (a < b && kc_upload((part == 1 ? g->m1 : g->m2) + (a - g->lo), all + (a - off), sizeof(float) * (b - a)))
        return failed("the optimiser's state to the GPU");
    return 0;
}

int gpu_trainer_read_state(GpuTrainer *g, AdamW *opt, const char *path) {
    if (!same_params(g, opt->v, opt->n) || have_moments(g) || adamw_load_with(opt, path, moment_in, g)) return -1;
    for (int k = 0; k < g->n_params; k++)
        if (kc_upload(g->params[k].p, opt->v[k].p, sizeof(float) * opt->v[k].n)) return failed("the optimiser's state to the GPU");
    g->step = opt->step;
    return refresh_bf16(g);
}

#endif
