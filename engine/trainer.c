#include "trainer.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "cuda_device.h"
#include "dist.h"
#include "export.h"
#include "optim.h"
#include "train_gpu.h"
#include "util.h"

typedef struct {  // records packed greedily into one sequence of at most tokens_per_step tokens
    int *tokens, *targets, *positions, *starts, n_records, T;
    int counted;  // targets that count (not -100): the divisor of every rank's share of its loss
} Packed;

struct Trainer;
// Where the steps run: the CPU backend with AdamW on the host, or the GPU with the adapter and its state there.
typedef struct {
    int (*zero_grad)(struct Trainer *t);
    float (*loss)(struct Trainer *t, const TrainBatch *b, int *n_counted, int training);
    int (*scale_grad)(struct Trainer *t, float s);
    double (*adamw)(struct Trainer *t, float lr);
    int (*write_state)(struct Trainer *t, const char *path);  // a checkpoint's state file: every rank calls it, rank 0 writes
    int (*read_state)(struct Trainer *t, const char *path);  // every rank reads one
    int (*values_to_host)(struct Trainer *t);  // before the result is written (rank 0 alone)
    int (*sum_grad)(struct Trainer *t);  // every rank's gradients summed on every rank (more than one rank)
    // before a step's last batch, when the gradients are summed: its backward pass may start summing them (or NULL)
    void (*sum_in_backward)(struct Trainer *t);
} StepOps;

struct Trainer {
    Model *m;
    const TrainOptions *o;
    const TrainData *train, *val;
    int full;
    Lora *lora, *grad;  // LoRA: the adapter and its gradients (host)
    Model *mgrad;  // full fine-tuning on the CPU: every weight's gradient (a GPU keeps its own)
    AdamW *opt;
    GpuTrainer *gpu;
    const StepOps *ops;
    Packed **epochs;  // [epochs][n_packed[e]]: every epoch's shuffled packing, laid out up front for the schedule
    int *n_packed, total, warm;
    Packed *vb;
    int nvb, start_step;
    size_t n_params;
    char *mpath;
    Dist *dist;  // NULL: one rank
    int rank, world, resumed_world;  // resumed_world: the ranks that wrote the checkpoint resumed from (0: none)
    int summed;  // each step's gradients go through the collectives (more than one rank, or --gpus on one)
    int zero;  // ZeRO-1: each rank keeps AdamW's moments for its chunk of the parameters and updates only that
    int buckets;  // the GPU's gradients summed during the backward pass in this many buckets (0: after it)
    int *share_starts;  // [tokens_per_step] a share's record starts, rebased to its first row
};

// ---- the step runners -------------------------------------------------------------------------------------

static TrainBatch batch_of(const Packed *p) {
    return (TrainBatch){p->tokens, p->targets, p->positions, p->starts, p->T, p->n_records, 0, p->counted};
}

// This rank's share of sequence j of n sequences: with at least as many sequences as ranks, whole sequences
// (sequence j is rank j mod world's); with fewer, the records of each that start in this rank's slice of its rows
// (whole records, so attention never crosses ranks), dividing by the whole's count. Either way the shares' losses
// and gradients add up to the whole's. T 0: nothing falls to this rank.
static TrainBatch share_of(const Trainer *t, const Packed *p, int j, int n) {
    if (t->world == 1) return batch_of(p);
    if (n >= t->world) return j % t->world == t->rank ? batch_of(p) : (TrainBatch){0};
    int lo = 0, hi = 0;
    for (int i = 0; i < p->n_records; i++) {
        int owner = (int)((long)p->starts[i] * t->world / p->T);
        if (owner < t->rank) lo = i + 1;
        if (owner <= t->rank) hi = i + 1;
    }
    int first = lo < p->n_records ? p->starts[lo] : p->T, end = hi < p->n_records ? p->starts[hi] : p->T;
    for (int i = lo; i < hi; i++) t->share_starts[i - lo] = p->starts[i] - first;
    return (TrainBatch){p->tokens + first, p->targets + first, p->positions + first, t->share_starts, end - first, hi - lo, first,
                        p->counted};
}

static int cpu_zero_grad(Trainer *t) { return adamw_zero_grad(t->opt), 0; }
static float cpu_loss(Trainer *t, const TrainBatch *b, int *n_counted, int training) {
    return train_loss_and_grad(t->m, t->lora, training ? t->grad : NULL, training ? t->mgrad : NULL, b, n_counted,
                               t->o->activation_checkpointing);
}
static int cpu_scale_grad(Trainer *t, float s) { return adamw_scale_grad(t->opt, s), 0; }
// ZeRO-1: the global norm from every rank's chunk, each rank's step on its chunk, then the chunks to every rank.
static double sharded_adamw(Trainer *t, float lr) {
    AdamW *o = t->opt;
    double ss = adamw_sumsq(o);
    if (dist_sum_f64(t->dist, &ss, 1, "the gradient norm's all-reduce")) return NAN;
    double norm = sqrt(ss);
    adamw_apply(o, norm, lr, 0.9f, 0.999f, 1e-8f, (float)t->o->weight_decay, (float)t->o->max_grad_norm);
    for (int k = 0; k < o->n; k++)
        if (dist_all_gather_f32(t->dist, o->v[k].p, o->v[k].n, "the weights' all-gather")) return NAN;
    return norm;
}
static double cpu_adamw(Trainer *t, float lr) {
    if (t->zero) return sharded_adamw(t, lr);
    return adamw_step(t->opt, lr, 0.9f, 0.999f, 1e-8f, (float)t->o->weight_decay, (float)t->o->max_grad_norm);
}
// ZeRO-1's moments, every rank's chunk of each, whole on rank 0 (the checkpoint is the same whatever the ranks, so
// a resume may take another count). 0, or -1 with an error.
static int gather_state(Trainer *t, AdamW *whole) {
    const AdamW *o = t->opt;
    *whole = (AdamW){o->v,
                     o->n,
                     ld_xcalloc((size_t)o->n, sizeof(float *)),
                     ld_xcalloc((size_t)o->n, sizeof(float *)),
                     ld_xcalloc((size_t)o->n, sizeof(size_t)),
                     ld_xcalloc((size_t)o->n, sizeof(size_t)),
                     o->step};
    size_t *each = ld_xcalloc((size_t)t->world, sizeof(size_t));
    int rc = 0;
    for (int i = 0; i < o->n && !rc; i++) {
        whole->hi[i] = o->v[i].n;
        size_t bytes = sizeof(float) * (o->hi[i] - o->lo[i]);
        rc = dist_gather(t->dist, o->m[i], bytes, (char **)&whole->m[i], each, "gathering the optimiser's state") ||
             dist_gather(t->dist, o->s[i], bytes, (char **)&whole->s[i], each, "gathering the optimiser's state");
    }
    free(each);
    return rc ? -1 : 0;
}

static void free_gathered(AdamW *whole) {
    for (int i = 0; i < whole->n; i++) free(whole->m[i]), free(whole->s[i]);
    free(whole->m), free(whole->s), free(whole->lo), free(whole->hi);
}

static int cpu_write_state(Trainer *t, const char *path) {
    if (!t->zero) return t->rank ? 0 : adamw_save(t->opt, path);
    AdamW whole;
    int rc = gather_state(t, &whole) || (!t->rank && adamw_save(&whole, path));
    free_gathered(&whole);
    return rc ? -1 : 0;
}
static int cpu_read_state(Trainer *t, const char *path) { return adamw_load(t->opt, path); }
static int cpu_values(Trainer *t) { return (void)t, 0; }  // the trained values are the host's already
static int cpu_sum_grad(Trainer *t) {
    for (int k = 0; k < t->opt->n; k++)
        if (t->zero ? dist_reduce_scatter_f32(t->dist, t->opt->v[k].g, t->opt->v[k].n, "the gradients' reduce-scatter")
                    : dist_sum_f32(t->dist, t->opt->v[k].g, t->opt->v[k].n, "the gradients' all-reduce"))
            return -1;
    return 0;
}
static const StepOps k_cpu_steps = {cpu_zero_grad,  cpu_loss,   cpu_scale_grad, cpu_adamw, cpu_write_state,
                                    cpu_read_state, cpu_values, cpu_sum_grad,   NULL};

static int gpu_zero_grad(Trainer *t) { return gpu_trainer_zero_grad(t->gpu); }
static float gpu_loss(Trainer *t, const TrainBatch *b, int *n_counted, int training) {
    return gpu_trainer_loss_and_grad(t->gpu, b, n_counted, training, t->lora ? t->lora->dropout_seed : 0);
}
static int gpu_scale_grad(Trainer *t, float s) { return gpu_trainer_scale_grad(t->gpu, s); }
static double gpu_adamw(Trainer *t, float lr) {
    return gpu_trainer_adamw(t->gpu, lr, 0.9f, 0.999f, 1e-8f, (float)t->o->weight_decay, (float)t->o->max_grad_norm);
}
static int gpu_write_state(Trainer *t, const char *path) { return gpu_trainer_write_state(t->gpu, t->opt, path); }
static int gpu_read_state(Trainer *t, const char *path) { return gpu_trainer_read_state(t->gpu, t->opt, path); }
static int gpu_values(Trainer *t) { return gpu_trainer_values(t->gpu, t->opt->v, t->opt->n); }
static int gpu_sum_grad(Trainer *t) { return gpu_trainer_sum_grad(t->gpu); }
static void gpu_sum_in_backward(Trainer *t) { gpu_trainer_sum_in_backward(t->gpu); }
static const StepOps k_gpu_steps = {gpu_zero_grad,  gpu_loss,   gpu_scale_grad, gpu_adamw,          gpu_write_state,
                                    gpu_read_state, gpu_values, gpu_sum_grad,   gpu_sum_in_backward};

// ---- data ---------------------------------------------------------------------------------------------------

static int pack(const TrainData *d, const int *order, int n, int cap, Packed **out) {
    int nb = 0, i = 0;
    *out = NULL;
    while (i < n) {
        Packed p = {0};
        p.tokens = ld_xmalloc(sizeof(int) * (size_t)cap), p.targets = ld_xmalloc(sizeof(int) * (size_t)cap);
        p.positions = ld_xmalloc(sizeof(int) * (size_t)cap), p.starts = ld_xmalloc(sizeof(int) * (size_t)cap);
        while (i < n && (p.T == 0 || p.T + d->v[order[i]].n <= cap)) {
            const TrainRecord *r = &d->v[order[i]];
            int len = r->n < cap ? r->n : cap;
            p.starts[p.n_records++] = p.T;
            for (int k = 0; k < len; k++) {
                p.tokens[p.T + k] = r->ids[k];
                p.targets[p.T + k] = k + 1 < len ? r->targets[k] : -100;
                p.positions[p.T + k] = k;
            }
            p.T += len;
            i++;
        }
        for (int k = 0; k < p.T; k++) p.counted += p.targets[k] != -100;
        *out = ld_xrealloc(*out, sizeof(Packed) * (size_t)(nb + 1));
        (*out)[nb++] = p;
    }
    return nb;
}

static void free_packed(Packed *p, int n) {
    for (int i = 0; i < n; i++) free(p[i].tokens), free(p[i].targets), free(p[i].positions), free(p[i].starts);
    free(p);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

// Every epoch's own shuffled order, packed; the step count follows.
static void pack_epochs(Trainer *t) {
    const TrainOptions *o = t->o;
    int n = t->train->n, *order = ld_xmalloc(sizeof(int) * (size_t)n);
    t->epochs = ld_xcalloc((size_t)o->epochs, sizeof(Packed *));
    t->n_packed = ld_xcalloc((size_t)o->epochs, sizeof(int));
    for (int ep = 0; ep < o->epochs; ep++) {
        uint64_t srng = ((uint64_t)o->seed << 20) ^ (uint64_t)(ep + 1) * 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < n; i++) order[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(rng_next(&srng) % (uint64_t)(i + 1)), k = order[i];
            order[i] = order[j], order[j] = k;
        }
        t->n_packed[ep] = pack(t->train, order, n, o->tokens_per_step, &t->epochs[ep]);
        t->total += (t->n_packed[ep] + o->grad_accum - 1) / o->grad_accum;
    }
    if (t->val && t->val->n) {
        order = ld_xrealloc(order, sizeof(int) * (size_t)t->val->n);
        for (int i = 0; i < t->val->n; i++) order[i] = i;
        t->nvb = pack(t->val, order, t->val->n, o->tokens_per_step, &t->vb);
    }
    free(order);
    t->warm = (int)ceilf((float)o->warmup * t->total);  // in float, as every earlier build: the same schedule
}

// ---- the trained parameters -------------------------------------------------------------------------------

// LoRA as PEFT initialises it: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0.
static void lora_init_peft(Lora *l, int seed) {
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)seed;
    for (int i = 0; i < l->n_layers * LT_COUNT; i++) {
        LoraPair *p = &l->w[i];
        if (!p->A) continue;
        float bound = 1.0f / sqrtf((float)p->in);
        for (size_t k = 0; k < (size_t)l->rank * p->in; k++)
            p->A[k] = ((float)(rng_next(&rng) >> 11) / 9007199254740992.0f * 2 - 1) * bound;
    }
}

// An earlier adapter's values (the loop's retrain: continue): same rank and targets.
static int lora_init_from(Lora *l, const ModelConfig *c, const char *dir, const char *targets) {
    Lora *init = lora_load_peft(c, dir);
    if (!init) return -1;
    int rc = 0;
    if (init->rank != l->rank) {
        ld_set_error("%s: rank %d, but this training uses rank %d", dir, init->rank, l->rank);
        rc = -1;
    }
    for (int i = 0; i < l->n_layers * LT_COUNT && !rc; i++) {
        LoraPair *p = &l->w[i], *q = &init->w[i];
        if (!p->A != !q->A) {
            ld_set_error("%s: targets other modules than targets %s", dir, targets);
            rc = -1;
        } else if (p->A) {
            memcpy(p->A, q->A, sizeof(float) * (size_t)l->rank * p->in);
            memcpy(p->B, q->B, sizeof(float) * (size_t)l->rank * p->out);
        }
    }
    lora_free(init);
    return rc;
}

static int make_params(Trainer *t) {
    const TrainOptions *o = t->o;
    Param *params;
    int n;
    if (t->full) {
        model_make_trainable(t->m);
        n = model_params(t->m, t->m, &params);  // the gradients' arrays come with the device (cpu_gradients)
    } else {
        unsigned mask = (unsigned)train_targets_mask(o->targets);
        t->lora = lora_new(&t->m->cfg, o->rank, (float)o->alpha, o->rslora, mask);
        t->grad = lora_new(&t->m->cfg, o->rank, (float)o->alpha, o->rslora, mask);
        lora_init_peft(t->lora, o->seed);
        t->lora->dropout = (float)o->dropout;
        if (o->init_adapter && lora_init_from(t->lora, &t->m->cfg, o->init_adapter, o->targets)) return -1;
        n = lora_params(t->lora, t->grad, &params);
    }
    t->opt = adamw_new(params, n);
    for (int i = 0; i < n; i++) t->n_params += params[i].n;
    return 0;
}

// Full fine-tuning on the CPU: the host arrays of every weight's gradient, into the optimiser's parameters.
static void cpu_gradients(Trainer *t) {
    Param *with;
    t->mgrad = model_grad_new(t->m);
    model_params(t->m, t->mgrad, &with);
    for (int k = 0; k < t->opt->n; k++) t->opt->v[k].g = with[k].g;
    free(with);
}

// Whether this rank trains on a GPU: 1 (its device chosen), 0, or -1 with an error. The GPU when asked (cuda) or
// found (auto).
static int wants_gpu(Trainer *t) {
    const char *dev = t->o->device;
    int cuda = !strcmp(dev, "cuda");
    if (!(cuda || (!strcmp(dev, "auto") && ld_cuda_device_count() > 0))) return 0;
    const DistPlace *at = dist_place(t->dist);
    int gpu = dist_local_gpu(t->dist);
    if (gpu < 0 && cuda) {
        char why[512];
        snprintf(why, sizeof why, "%s", ld_last_error());
        ld_set_error("device cuda: %s", why);
        return -1;
    }
    if (gpu < 0) return 0;  // auto with more ranks than GPUs: the CPU ranks
    if (at->world > 1 && ld_cuda_use_device(gpu)) {
        ld_set_error("rank %d cannot use GPU %d", at->rank, gpu);
        return -1;
    }
    return 1;
}

// Every rank decides alike, or none trains: a GPU rank and a CPU rank would sum their gradients apart. The ranks
// meet first with no deadline (loading takes each its own time), then after the GPU's upload again.
static int pick_device(Trainer *t) {
    t->ops = &k_cpu_steps;
    int want = wants_gpu(t);
    if (want < 0 || dist_wait_for_all(t->dist, "waiting for every rank to load")) return -1;
    double on_gpu = want;
    if (dist_sum_f64(t->dist, &on_gpu, 1, "choosing the device")) return -1;
    if (on_gpu != 0 && on_gpu != t->world) {
        ld_set_error("%.0f of %d ranks would train on a GPU and the rest on the CPU: give every rank a GPU of its own, or use "
                     "--device cpu",
                     on_gpu, t->world);
        return -1;
    }
    t->zero = t->full && t->world > 1 && t->o->zero;  // full fine-tuning: each rank keeps its chunk of AdamW's moments
    if (!want) {
        if (t->full) cpu_gradients(t);
        if (t->zero) adamw_shard(t->opt, t->rank, t->world);
        return 0;
    }
    if (!(t->gpu = gpu_trainer_new(t->m, t->full ? NULL : t->lora, !strcmp(t->o->precision, "bf16") ? LD_BF16 : LD_F32))) {
        char why[512];
        snprintf(why, sizeof why, "%s", ld_last_error());
        ld_set_error("device cuda: %s", why);
        return -1;
    }
    t->ops = &k_gpu_steps;
    adamw_drop_moments(t->opt);  // AdamW's state lives on the device; checkpoints stream it (gpu_trainer_write_state)
    gpu_trainer_recompute(t->gpu, t->o->activation_checkpointing);
    int nccl = dist_device_collectives(t->dist);
    t->summed |= nccl;
    if ((nccl && dist_wait_for_all(t->dist, "waiting for every rank's GPU")) || gpu_trainer_distribute(t->gpu, t->dist, nccl, t->zero))
        return -1;
    t->zero = gpu_trainer_sharded(t->gpu);  // (through host memory, every rank keeps whole moments)
    if (nccl && t->o->overlap) t->buckets = gpu_trainer_overlap(t->gpu, t->o->bucket_mb);
    return 0;
}

Trainer *trainer_new(Model *m, const TrainOptions *o, const TrainData *train, const TrainData *val, Dist *dist) {
    Trainer *t = ld_xcalloc(1, sizeof *t);
    t->m = m, t->o = o, t->train = train, t->val = val, t->full = !strcmp(o->method, "full");
    t->dist = dist, t->rank = dist_place(dist)->rank, t->world = dist_place(dist)->world, t->summed = t->world > 1;
    t->share_starts = ld_xmalloc(sizeof(int) * (size_t)o->tokens_per_step);
    t->mpath = ld_path_join(o->out, "metrics.jsonl");
    pack_epochs(t);
    if (make_params(t) || pick_device(t) || ld_mkdir_p(o->out)) {
        trainer_free(t);
        return NULL;
    }
    return t;
}

void trainer_info(const Trainer *t, TrainerInfo *out) {
    const char *sums = !t->summed ? "none" : t->gpu ? gpu_trainer_collectives(t->gpu, t->dist) : dist_transport_name(t->dist);
    *out = (TrainerInfo){.records = t->train->n,
                         .val_records = t->val ? t->val->n : 0,
                         .per_epoch = t->n_packed[0],
                         .total_steps = t->total,
                         .on_gpu = t->gpu != NULL,
                         .n_params = t->n_params,
                         .device = "cpu",
                         .ranks = t->world,
                         .resumed_ranks = t->resumed_world,
                         .collectives = sums,
                         .zero = t->zero,
                         .state_floats = t->gpu ? gpu_trainer_state_floats(t->gpu) : adamw_state_floats(t->opt),
                         .whole_state_floats = 2 * t->n_params,
                         .buckets = t->buckets};
    if (t->gpu) ld_cuda_device_describe(ld_cuda_current_device(), out->device, sizeof out->device);
}

void trainer_free(Trainer *t) {
    if (!t) return;
    for (int ep = 0; t->epochs && ep < t->o->epochs; ep++) free_packed(t->epochs[ep], t->n_packed[ep]);
    free(t->epochs), free(t->n_packed);
    free_packed(t->vb, t->nvb);
    gpu_trainer_free(t->gpu);
    lora_free(t->lora), lora_free(t->grad), adamw_free(t->opt), model_free(t->mgrad);
    free(t->share_starts), free(t->mpath), free(t);
}

// ---- checkpoints ----------------------------------------------------------------------------------------

// DIR/checkpoint holds the trained weights with AdamW's moments and step (state-N.safetensors, written atomically)
// and state.json naming the current one with the data position (replaced atomically after it): a kill -9 at any
// point leaves a state.json that names a complete state file (or none yet: then there is nothing to resume from).
// Older state files go after the switch, the single state.safetensors of an earlier build's layout too.
static void remove_old_states(const char *ck, const char *keep) {
    DIR *d = opendir(ck);
    for (struct dirent *e; d && (e = readdir(d));) {
        int state = !strncmp(e->d_name, "state-", 6) || !strcmp(e->d_name, "state.safetensors");
        if (!state || strcmp(e->d_name, keep) == 0) continue;
        char *p = ld_path_join(ck, e->d_name);
        remove(p);
        free(p);
    }
    if (d) closedir(d);
}

// After the state file: state.json names it, and the older ones go.
static int commit_checkpoint(const char *ck, const char *name, int step, int world) {
    char *js = ld_path_join(ck, "state.json"), *tmp;
    FILE *f = ld_atomic_open(js, &tmp);
    int rc = !f || ld_atomic_commit(f, tmp, js, fprintf(f, "{\"step\": %d, \"state\": \"%s\", \"ranks\": %d}\n", step, name, world) > 0);
    if (!rc) remove_old_states(ck, name);
    else ld_set_error("%s: cannot write the checkpoint", ck);
    free(js);
    return rc ? -1 : 0;
}

static int load_checkpoint(Trainer *t, int *step, int *world) {
    char *ck = ld_path_join(t->o->out, "checkpoint"), *js = ld_path_join(ck, "state.json");
    int rc = -1;
    char *txt = ld_read_file(js, NULL);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step"), *file = cJSON_GetObjectItemCaseSensitive(j, "state"),
                *ranks = cJSON_GetObjectItemCaseSensitive(j, "ranks");
    *world = cJSON_IsNumber(ranks) && ranks->valueint > 0 ? ranks->valueint : 1;  // earlier builds ran one rank
    // a checkpoint of an earlier build holds state.safetensors and no name
    const char *name = cJSON_IsString(file) && !strchr(file->valuestring, '/') ? file->valuestring : "state.safetensors";
    char *st = ld_path_join(ck, name);
    if (!cJSON_IsNumber(s)) ld_set_error("%s: no usable checkpoint to resume from", ck);
    else if (!t->ops->read_state(t, st))
        rc = 0, *step = s->valueint;
    cJSON_Delete(j);
    free(txt), free(ck), free(st), free(js);
    return rc;
}

// metrics.jsonl keeps the lines of the steps up to the checkpoint; the steps after it are done again.
static int trim_metrics(const char *path, int upto) {
    char *txt = ld_read_file(path, NULL), *tmp, *save = NULL;
    FILE *f = txt ? ld_atomic_open(path, &tmp) : NULL;
    if (!f) {
        free(txt);
        return txt ? -1 : 0;  // no metrics yet: nothing to keep
    }
    int ok = 1;
    for (char *line = strtok_r(txt, "\n", &save); line && ok; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (cJSON_IsNumber(st) && st->valueint <= upto) ok = fprintf(f, "%s\n", line) > 0;
        cJSON_Delete(j);
    }
    free(txt);
    return ld_atomic_commit(f, tmp, path, ok);
}

// Every rank takes part (its ops write the state file, ZeRO-1's moments gathered on rank 0); rank 0 then names it
// in state.json, the others waiting for it.
static int write_checkpoint(Trainer *t, int step) {
    char *ck = ld_path_join(t->o->out, "checkpoint"), name[64];
    snprintf(name, sizeof name, "state-%d.safetensors", step);
    char *st = ld_path_join(ck, name);
    int rc = (!t->rank && ld_mkdir_p(ck)) || t->ops->write_state(t, st) || (!t->rank && commit_checkpoint(ck, name, step, t->world));
    free(st), free(ck);
    return rc || dist_wait_for_all(t->dist, "waiting for rank 0's checkpoint") ? -1 : 0;
}

// Every rank reads the checkpoint (DIR on a filesystem they share); rank 0's step is checked against each rank's.
int trainer_resume(Trainer *t) {
    if (load_checkpoint(t, &t->start_step, &t->resumed_world)) return -1;
    int step0 = t->start_step;
    if (dist_bcast(t->dist, &step0, sizeof step0, "the checkpoint's step")) return -1;
    if (step0 != t->start_step) {
        ld_set_error("rank %d found the checkpoint of step %d in %s, rank 0 that of step %d: the output directory must be one "
                     "that every rank shares",
                     t->rank, t->start_step, t->o->out, step0);
        return -1;
    }
    if (t->rank == 0 && trim_metrics(t->mpath, t->start_step)) return -1;
    return t->start_step;
}

// ---- the run ----------------------------------------------------------------------------------------------

// The validation loss over every counted target (each rank scores its shares, the sums are added), or NAN with an
// error.
static double eval_loss(Trainer *t) {
    double sum[2] = {0, 0};  // the losses' sum, the counted targets
    for (int i = 0; i < t->nvb; i++) {
        TrainBatch b = share_of(t, &t->vb[i], i, t->nvb);
        int c;
        float loss = b.T ? t->ops->loss(t, &b, &c, 0) : 0;
        if (isnan(loss)) return NAN;
        if (b.T) sum[0] += (double)loss * c, sum[1] += c;
    }
    if (dist_sum_f64(t->dist, sum, 2, "the validation loss's all-reduce")) return NAN;
    if (!sum[1]) ld_set_error("the validation records have no target token to score");
    return sum[1] ? sum[0] / sum[1] : NAN;
}

static float lr_at(const Trainer *t, int step) {
    const TrainOptions *o = t->o;
    float lr = (float)o->lr, span = fmaxf(1, (float)(t->total - t->warm));
    if (step < t->warm) return lr * (step + 1) / t->warm;
    if (!strcmp(o->schedule, "cosine")) return lr * 0.5f * (1 + cosf((float)M_PI * (step - t->warm) / span));
    if (!strcmp(o->schedule, "linear")) return lr * (1 - (float)(step - t->warm) / span);
    return lr;
}

static int step_failed(int step) {
    char why[512];
    snprintf(why, sizeof why, "%s", ld_last_error());
    ld_set_error("training step %d: %s", step + 1, why);
    return -1;
}

// One optimiser step over micro-batches b0.. of an epoch (this rank's share of each; the shares' losses and
// gradients summed over the ranks); p gets the mean of their mean losses, the learning rate and the gradient norm.
// Stops at the first failure: 0, or -1 with an error naming the step.
static int train_step(Trainer *t, const Packed *pb, int npb, int b0, int step, long *tokens, TrainProgress *p) {
    const TrainOptions *o = t->o;
    if (t->ops->zero_grad(t)) return step_failed(step);
    if (t->lora) t->lora->dropout_seed = ((uint64_t)o->seed << 32) ^ (uint64_t)step;  // fresh masks each step, same on a rerun
    double loss = 0;
    int nmb = 0, n = npb - b0 < o->grad_accum ? npb - b0 : o->grad_accum;
    for (int b = b0; b < b0 + n; b++, nmb++) {
        TrainBatch tb = share_of(t, &pb[b], b - b0, n);
        int c;
        if (b == b0 + n - 1 && t->summed && t->ops->sum_in_backward) t->ops->sum_in_backward(t);
        float l = tb.T ? t->ops->loss(t, &tb, &c, 1) : 0;
        if (isnan(l)) return step_failed(step);
        loss += l;
        *tokens += pb[b].T;
    }
    if (t->summed && (t->ops->sum_grad(t) || dist_sum_f64(t->dist, &loss, 1, "the loss's all-reduce"))) return step_failed(step);
    if (nmb > 1 && t->ops->scale_grad(t, 1.0f / nmb)) return step_failed(step);
    p->loss = loss / nmb;
    p->lr = lr_at(t, step);
    p->grad_norm = t->ops->adamw(t, (float)p->lr);
    return isnan(p->grad_norm) ? step_failed(step) : 0;
}

static void write_metrics(FILE *mf, const TrainProgress *p) {
    if (!mf) return;  // a rank other than 0
    fprintf(mf, "{\"step\": %d, \"epoch\": %d, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"tokens\": %ld, \"tokens_per_s\": %.1f",
            p->step, p->epoch, p->loss, p->lr, p->grad_norm, p->tokens, p->tokens_per_s);
    if (p->evaluated) fprintf(mf, ", \"val_loss\": %.6f", p->val_loss);
    fprintf(mf, "}\n");
    fflush(mf);
}

// The validation loss before training (step 0), reported and written like a step. 0, or -1 with an error.
static int eval_before(Trainer *t, FILE *mf, void (*on_step)(const TrainProgress *, void *), void *ctx) {
    if (!t->nvb || t->start_step) return 0;
    TrainProgress p = {.total = t->total, .evaluated = 1, .val_loss = eval_loss(t)};
    if (isnan(p.val_loss)) {
        char why[512];
        snprintf(why, sizeof why, "%s", ld_last_error());
        ld_set_error("validation before training: %s", why);
        return -1;
    }
    if (mf) fprintf(mf, "{\"step\": 0, \"val_loss\": %.6f}\n", p.val_loss);
    if (on_step) on_step(&p, ctx);
    return 0;
}

int trainer_run(Trainer *t, void (*on_step)(const TrainProgress *, void *), void *ctx) {
    const TrainOptions *o = t->o;
    FILE *mf = t->rank ? NULL : fopen(t->mpath, t->start_step ? "a" : "w");
    if (!mf && !t->rank) {
        ld_set_error("%s: cannot write", t->mpath);
        return -1;
    }
    int step = 0, rc = eval_before(t, mf, on_step, ctx);
    double t0 = ld_time_s();
    long tokens = 0;  // this run's (a resumed run counts from the checkpoint)
    for (int ep = 0; ep < o->epochs && !rc; ep++) {
        const Packed *pb = t->epochs[ep];
        int npb = t->n_packed[ep];
        for (int b0 = 0; b0 < npb && !rc; b0 += o->grad_accum, step++) {
            if (step < t->start_step) continue;  // done before the checkpoint
            TrainProgress p = {.step = step + 1, .total = t->total, .epoch = ep + 1};
            if ((rc = train_step(t, pb, npb, b0, step, &tokens, &p))) break;
            double dt = ld_time_s() - t0;
            p.tokens = tokens, p.tokens_per_s = tokens / dt, p.eta_s = dt / (step + 1 - t->start_step) * (t->total - step - 1);
            p.evaluated = t->nvb && ((o->eval_every && p.step % o->eval_every == 0) || (!o->eval_every && b0 + o->grad_accum >= npb) ||
                                     p.step == t->total);
            if (p.evaluated && isnan(p.val_loss = eval_loss(t))) {
                rc = step_failed(step);  // a validation pass that failed (or diverged): no step after it is trusted
                break;
            }
            write_metrics(mf, &p);
            if (on_step) on_step(&p, ctx);
            if (o->save_every && p.step % o->save_every == 0 && p.step < t->total) rc = write_checkpoint(t, p.step);
        }
    }
    if (mf) fclose(mf);
    return rc;
}

int trainer_save(Trainer *t, char **path) {
    const TrainOptions *o = t->o;
    *path = NULL;
    if (t->rank) return 0;  // every rank holds the same weights: rank 0's are written
    if (t->ops->values_to_host(t)) return -1;  // the trained values live on the GPU until now
    *path = ld_path_join(o->out, t->full ? (model_gguf(t->m) ? "model.gguf" : "model") : "adapter");
    int nt, nm,
        rc = !t->full           ? lora_save_peft(t->lora, *path, o->model)
             : model_gguf(t->m) ? export_gguf(t->m, NULL, LD_F32, *path, &nt, &nm)
                                : export_hf(t->m, NULL, *path, &nt, &nm);
    return rc;
}
