#include "train_gpu.h"

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
float gpu_trainer_loss_and_grad(GpuTrainer *g, const TrainBatch *b, int *n, int training, uint64_t seed) {
    return (void)g, (void)b, (void)n, (void)training, (void)seed, NAN;
}
int gpu_trainer_zero_grad(GpuTrainer *g) { return (void)g, -1; }
double gpu_trainer_adamw(GpuTrainer *g, float lr, float b1, float b2, float eps, float wd, float mn) {
    return (void)g, (void)lr, (void)b1, (void)b2, (void)eps, (void)wd, (void)mn, NAN;
}
int gpu_trainer_download(GpuTrainer *g, Lora *l) { return (void)g, (void)l, -1; }
int gpu_trainer_scale_grad(GpuTrainer *g, float s) { return (void)g, (void)s, -1; }
int gpu_trainer_sum_grad(GpuTrainer *g, struct Dist *d, Lora *host) { return (void)g, (void)d, (void)host, -1; }
int gpu_trainer_join(GpuTrainer *g, struct Dist *d) { return (void)g, (void)d, -1; }
const char *gpu_trainer_collectives(const GpuTrainer *g, const struct Dist *d) { return (void)g, (void)d, "none"; }
int gpu_trainer_save_state(GpuTrainer *g, struct AdamW *o) { return (void)g, (void)o, -1; }
int gpu_trainer_load_state(GpuTrainer *g, const struct AdamW *o) { return (void)g, (void)o, -1; }

#else

#include "cuda_device.h"
#include "dist.h"
#include "gpu_weights.h"
#include "kernels_cuda.h"
#include "optim.h"

struct GpuTrainer {
    const Model *m;
    int step;  // AdamW steps taken
    float dropout;
    GpuWeights *w;  // the frozen base
    Lora *P, *dP;  // the adapter and its gradients on the device
    Lora *mP, *vP;  // AdamW's moments, shaped like the adapter
    KcComm *comm;  // the data-parallel ranks' GPUs (NCCL), or NULL
};

GpuTrainer *gpu_trainer_new(const Model *m, const Lora *lora, LdDtype wt) {
    if (ld_cuda_device_count() == 0) {
        ld_set_error("no CUDA device found");
        return NULL;
    }
    GpuTrainer *g = ld_xcalloc(1, sizeof *g);
    g->m = m, g->dropout = lora->dropout;
    if (!(g->w = gpu_weights_upload(m, wt)) || !(g->P = gpu_lora_new(lora, 1)) || !(g->dP = gpu_lora_new(lora, 0)) ||
        !(g->mP = gpu_lora_new(lora, 0)) || !(g->vP = gpu_lora_new(lora, 0))) {
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
    gpu_lora_free(g->P), gpu_lora_free(g->dP), gpu_lora_free(g->mP), gpu_lora_free(g->vP);
    gpu_weights_free(g->w);
    free(g);
}

int gpu_trainer_zero_grad(GpuTrainer *g) { return gpu_lora_fill(g->dP, 0); }

float gpu_trainer_loss_and_grad(GpuTrainer *g, const TrainBatch *b, int *n_counted, int training, uint64_t dropout_seed) {
    const Backend *be = &ld_backend_cuda;
    const ModelConfig *c = &g->m->cfg;
    if (train_batch_check(c, b)) return NAN;
    Transformer t = {.be = be, .cfg = c, .w = g->w->w, .adapter = g->P, .bf16_acts = g->w->wt == LD_BF16};
    TrainStep step = {
        .adapter_grad = g->dP, .dropout = g->dropout, .dropout_seed = dropout_seed, .row0 = b->row0, .loss_norm = b->loss_norm};
    TokenPlan plan;
    float loss = NAN;
    int rc = token_plan_packed(be, c, b, &plan) || transformer_loss(&t, &plan, b->targets, training ? &step : NULL, &loss, n_counted) ||
             kc_sync();
    token_plan_free(be, &plan);
    if (rc)
        ld_set_error("GPU training step: %s", kc_last_error());
    else if (isnan(loss))
        ld_set_error("the loss is not a number (the training diverged: a lower learning rate may help)");
    return rc ? NAN : loss;
}

double gpu_trainer_adamw(GpuTrainer *g, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm) {
    double ss = 0, part;
    int n = g->m->cfg.n_layers * LT_COUNT;
    for (int i = 0; i < n; i++) {
        LoraPair *d = &g->dP->w[i];
        if (!d->A) continue;
        if (kc_sumsq(d->A, (size_t)g->dP->rank * d->in, &part)) return NAN;
        ss += part;
        if (kc_sumsq(d->B, (size_t)d->out * g->dP->rank, &part)) return NAN;
        ss += part;
    }
    double norm = sqrt(ss);
    float clip = max_norm > 0 ? (float)(max_norm / (norm + 1e-6)) : 1.0f;  // torch's clip_grad_norm_
    g->step++;
    for (int i = 0; i < n; i++) {
        LoraPair *p = &g->P->w[i], *d = &g->dP->w[i], *m1 = &g->mP->w[i], *m2 = &g->vP->w[i];
        if (!p->A) continue;
        size_t na = (size_t)g->P->rank * p->in, nb = (size_t)p->out * g->P->rank;
        int rc = (clip < 1.0f && (kc_scale(d->A, na, clip) || kc_scale(d->B, nb, clip))) ||
                 kc_adamw(p->A, d->A, m1->A, m2->A, na, lr, beta1, beta2, eps, weight_decay, g->step) ||
                 kc_adamw(p->B, d->B, m1->B, m2->B, nb, lr, beta1, beta2, eps, weight_decay, g->step);
        if (rc) {
            ld_set_error("GPU AdamW step: %s", kc_last_error());
            return NAN;
        }
    }
    return norm;
}

int gpu_trainer_scale_grad(GpuTrainer *g, float s) {
    for (int i = 0; i < g->m->cfg.n_layers * LT_COUNT; i++) {
        LoraPair *d = &g->dP->w[i];
        if (d->A && (kc_scale(d->A, (size_t)g->dP->rank * d->in, s) || kc_scale(d->B, (size_t)d->out * g->dP->rank, s))) {
            ld_set_error("GPU gradient scaling: %s", kc_last_error());
            return -1;
        }
    }
    return 0;
}

int gpu_trainer_join(GpuTrainer *g, Dist *d) {
#ifdef LLAMADUO_HAVE_NCCL
    const DistPlace *at = dist_place(d);
    unsigned char id[KC_COMM_ID_BYTES] = {0};
    if (at->rank == 0 && kc_comm_id(id)) {
        ld_set_error("NCCL: %s", kc_last_error());
        return -1;
    }
    if (dist_bcast(d, id, sizeof id, "NCCL's communicator id")) return -1;
    if (!(g->comm = kc_comm_join(id, at->world, at->rank, dist_timeout_s(d)))) {
        ld_set_error("NCCL: %s", kc_last_error());
        return -1;
    }
#else
    (void)g, (void)d;
#endif
    return 0;
}

const char *gpu_trainer_collectives(const GpuTrainer *g, const Dist *d) {
    return g->comm ? "NCCL" : !strcmp(dist_transport_name(d), "TCP") ? "TCP through host memory" : "MPI through host memory";
}

int gpu_trainer_sum_grad(GpuTrainer *g, Dist *d, Lora *host) {
#ifdef LLAMADUO_HAVE_NCCL
    if (g->comm) {  // every pair's A and B, summed in place as one group
        int k = 0, pairs = g->m->cfg.n_layers * LT_COUNT;
        float **bufs = ld_xcalloc((size_t)pairs * 2, sizeof *bufs);
        size_t *ns = ld_xcalloc((size_t)pairs * 2, sizeof *ns);
        for (int i = 0; i < pairs; i++) {
            const LoraPair *p = &g->dP->w[i];
            if (!p->A) continue;
            bufs[k] = p->A, ns[k++] = (size_t)g->dP->rank * p->in;
            bufs[k] = p->B, ns[k++] = (size_t)g->dP->rank * p->out;
        }
        int rc = kc_comm_sum(g->comm, bufs, ns, k);
        if (rc) ld_set_error("the gradients' all-reduce (NCCL): %s", kc_last_error());
        free(bufs), free(ns);
        return rc;
    }
#endif
    // without NCCL: through the host copy, pair by pair
    if (gpu_lora_transfer(host, g->dP, 1)) return -1;
    for (int i = 0; i < g->m->cfg.n_layers * LT_COUNT; i++) {
        LoraPair *p = &host->w[i];
        if (p->A && (dist_sum_f32(d, p->A, (size_t)host->rank * p->in, "the gradients' all-reduce") ||
                     dist_sum_f32(d, p->B, (size_t)host->rank * p->out, "the gradients' all-reduce")))
            return -1;
    }
    return gpu_lora_transfer(host, g->dP, 0);
}

// Walks the pairs in lora_params() order (layer, target, A then B), copying values and moments either way.
static int transfer_state(GpuTrainer *g, AdamW *opt, int to_host) {
    int k = 0, r = g->P->rank;
    for (int i = 0; i < g->m->cfg.n_layers * LT_COUNT; i++) {
        if (!g->P->w[i].A) continue;
        for (int ab = 0; ab < 2; ab++, k++) {
            const LoraPair *p = &g->P->w[i];
            size_t n = ab ? (size_t)p->out * r : (size_t)r * p->in;
            float *dev[3] = {ab ? p->B : p->A, ab ? g->mP->w[i].B : g->mP->w[i].A, ab ? g->vP->w[i].B : g->vP->w[i].A};
            if (k >= opt->n || opt->v[k].n != n) {
                ld_set_error("the optimiser state does not match the adapter on the GPU");
                return -1;
            }
            float *host[3] = {opt->v[k].p, opt->m[k], opt->s[k]};
            for (int j = 0; j < 3; j++)
                if (to_host ? kc_download(host[j], dev[j], sizeof(float) * n) : kc_upload(dev[j], host[j], sizeof(float) * n)) {
                    ld_set_error("GPU state transfer: %s", kc_last_error());
                    return -1;
                }
        }
    }
    if (to_host)
        opt->step = g->step;
    else
        g->step = opt->step;
    return 0;
}

int gpu_trainer_save_state(GpuTrainer *g, AdamW *opt) { return transfer_state(g, opt, 1); }
int gpu_trainer_load_state(GpuTrainer *g, const AdamW *opt) { return transfer_state(g, (AdamW *)opt, 0); }

int gpu_trainer_download(GpuTrainer *g, Lora *lora) { return gpu_lora_transfer(lora, g->P, 1); }

#endif
