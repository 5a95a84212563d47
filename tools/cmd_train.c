// llamaduo train: LoRA or full fine-tuning on chat records (CPU path), writing a PEFT adapter directory or the
// whole model.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "backprop.h"
#include "config.h"
#include "export.h"
#include "lora.h"
#include "optim.h"
#include "records.h"
#include "cuda_device.h"
#include "safetensors.h"
#include "train_data.h"
#include "train_gpu.h"
#include "util.h"

static const char *k_help =
    "usage: llamaduo train --model PATH --train TRAIN.jsonl --out DIR [options]   (or --config FILE.yaml)\n\n"
    "Fine-tunes a LoRA adapter on chat records ({\"messages\": [...]}; loss on assistant turns) and writes DIR/adapter\n"
    "(PEFT format: adapter_config.json + adapter_model.safetensors) and DIR/metrics.jsonl (one line per step).\n"
    "  --method full             train every weight instead: writes DIR/model (an HF directory, fp32) for an HF base\n"
    "                            or DIR/model.gguf (F32, the base's metadata) for a GGUF base\n"
    "  --val FILE.jsonl          validation records: loss every --eval-every steps and at the end\n"
    "  --rank R --alpha A        LoRA rank (default 8) and alpha (default 2R); --rslora scales by A/sqrt(R)\n"
    "  --dropout P               LoRA dropout on the adapter's input while training (default 0.05)\n"
    "  --targets LIST            all-linear (default) or a comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj\n"
    "  --epochs N                passes over the data (default 3)\n"
    "  --lr X --schedule S       peak learning rate (default 2e-4 LoRA, 1e-5 full); cosine (default), linear or constant\n"
    "  --warmup F                share of steps warming up linearly (default 0.1)\n"
    "  --weight-decay X          AdamW decay (default 0); --max-grad-norm X clips (default 1.0; 0 = off)\n"
    "  --tokens-per-step N       records packed into one sequence of at most N tokens (default 1024)\n"
    "  --grad-accum N            micro-batches per optimiser step (default 1)\n"
    "  --max-len N               longest record in tokens (default 1024); --long-records skip|truncate|error (default skip)\n"
    "  --full-sequence-loss      train on every token, not just the assistant turns\n"
    "  --seed N                  data order and LoRA initialisation (default 1)\n"
    "  --eval-every N            validation interval in steps (default: each epoch's end)\n"
    "  --save-every N            checkpoint (trained weights, optimiser state, position) every N steps into DIR/checkpoint\n"
    "                            (default 20); --resume continues from it after a crash with the same losses\n"
    "  --init-adapter DIR        start from this PEFT adapter's values (same rank and targets) instead of PEFT's init\n"
    "  --check                   check the settings and exit (nothing is loaded or written)\n"
    "  --chat-template FAMILY    override the model's chat template family\n"
    "  --device auto|cuda|cpu    where LoRA training runs (default auto: the GPU when one is found);\n"
    "                            full fine-tuning runs on the CPU\n"
    "  --precision fp32|bf16     the frozen base on the GPU (default fp32; bf16: half the memory, tensor-core\n"
    "                            GEMMs accumulating in fp32; the adapter, its gradients and AdamW stay fp32)\n"
    "  --threads N               CPU threads\n"
    "A YAML --config holds the same settings under `train:` (names with underscores: tokens_per_step ...);\n"
    "flags after it override it.\n";

typedef struct {
    const char *model, *train, *val, *out, *targets, *schedule, *long_records, *chat_template, *method, *init_adapter, *device, *precision;
    int rank, rslora, epochs, tokens_per_step, grad_accum, max_len, full_seq, seed, eval_every, threads, save_every, resume, check;
    float alpha, lr, warmup, weight_decay, max_grad_norm, dropout;
} TrainOpts;

static unsigned parse_targets(const char *s) {
    if (!strcmp(s, "all-linear")) return (1u << LT_COUNT) - 1;
    unsigned mask = 0;
    char *copy = ld_xstrdup(s);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        int found = 0;
        for (int t = 0; t < LT_COUNT; t++)
            if (!strcmp(tok, lora_target_name((LoraTarget)t))) mask |= 1u << t, found = 1;
        if (!found) die("--targets: unknown module '%s' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)", tok);
    }
    free(copy);
    return mask;
}

static cJSON *g_config;  // the options' strings point into it: freed when training is done

static void apply_yaml(const char *path, TrainOpts *o) {
    cJSON *root = g_config = config_load(path);
    if (!root) die("%s", ld_last_error());
    static const char *const top[] = {"train", NULL};
    static const char *const keys[] = {"model", "train", "val", "out", "method", "device", "precision", "rank", "alpha", "dropout", "rslora", "targets", "epochs", "lr",
                                       "schedule", "warmup", "weight_decay", "max_grad_norm", "tokens_per_step", "grad_accum",
                                       "max_len", "long_records", "full_sequence_loss", "seed", "eval_every", "chat_template",
                                       "threads", NULL};
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "train");
    double lr, alpha, warmup, wd, mgn, drop;
    if (cfg_check_keys(root, "", top, path) || cfg_check_keys(t, "train", keys, path) ||
        cfg_get_str(t, "model", "train", o->model ? o->model : "", &o->model, path) ||
        cfg_get_str(t, "train", "train", o->train ? o->train : "", &o->train, path) ||
        cfg_get_str(t, "val", "train", o->val ? o->val : "", &o->val, path) ||
        cfg_get_str(t, "out", "train", o->out ? o->out : "", &o->out, path) ||
        cfg_get_str(t, "method", "train", o->method, &o->method, path) ||
        cfg_get_str(t, "device", "train", o->device, &o->device, path) ||
        cfg_get_str(t, "precision", "train", o->precision, &o->precision, path) ||
        cfg_get_int(t, "rank", "train", o->rank, 1, 1024, &o->rank, path) ||
        cfg_get_num(t, "alpha", "train", o->alpha, 0, 1e6, &alpha, path) ||
        cfg_get_num(t, "dropout", "train", o->dropout, 0, 0.95, &drop, path) ||
        cfg_get_str(t, "targets", "train", o->targets, &o->targets, path) ||
        cfg_get_int(t, "epochs", "train", o->epochs, 1, 100000, &o->epochs, path) ||
        cfg_get_num(t, "lr", "train", o->lr, 0, 10, &lr, path) ||
        cfg_get_str(t, "schedule", "train", o->schedule, &o->schedule, path) ||
        cfg_get_num(t, "warmup", "train", o->warmup, 0, 1, &warmup, path) ||
        cfg_get_num(t, "weight_decay", "train", o->weight_decay, 0, 10, &wd, path) ||
        cfg_get_num(t, "max_grad_norm", "train", o->max_grad_norm, 0, 1e6, &mgn, path) ||
        cfg_get_int(t, "tokens_per_step", "train", o->tokens_per_step, 8, 1 << 20, &o->tokens_per_step, path) ||
        cfg_get_int(t, "grad_accum", "train", o->grad_accum, 1, 4096, &o->grad_accum, path) ||
        cfg_get_int(t, "max_len", "train", o->max_len, 8, 1 << 20, &o->max_len, path) ||
        cfg_get_str(t, "long_records", "train", o->long_records, &o->long_records, path) ||
        cfg_get_int(t, "seed", "train", o->seed, 0, 2147483647, &o->seed, path) ||
        cfg_get_int(t, "eval_every", "train", o->eval_every, 0, 1 << 30, &o->eval_every, path) ||
        cfg_get_int(t, "threads", "train", o->threads, 0, 1024, &o->threads, path))
        die("%s", ld_last_error());
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(t, "rslora"), *fs = cJSON_GetObjectItemCaseSensitive(t, "full_sequence_loss");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(t, "chat_template");
    if (b && !cJSON_IsBool(b)) die("%s: 'train.rslora' must be true or false", path);
    if (fs && !cJSON_IsBool(fs)) die("%s: 'train.full_sequence_loss' must be true or false", path);
    if (b) o->rslora = cJSON_IsTrue(b);
    if (fs) o->full_seq = cJSON_IsTrue(fs);
    if (cJSON_IsString(ct)) o->chat_template = ld_xstrdup(ct->valuestring);
    o->dropout = (float)drop;
    o->lr = (float)lr, o->alpha = (float)alpha, o->warmup = (float)warmup, o->weight_decay = (float)wd, o->max_grad_norm = (float)mgn;
    // an empty path means "not given"; an empty choice (method: "") stays, to be refused by name below
    const char **strs[] = {&o->model, &o->train, &o->val, &o->out};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (*strs[i] && !**strs[i]) *strs[i] = NULL;
}

typedef struct {
    TrainRecord *v;
    int n, skipped, truncated;
} Dataset;

static void load_dataset(const Model *m, const ChatTemplate *ct, const char *path, const TrainOpts *o, Dataset *d) {
    memset(d, 0, sizeof *d);
    Records recs;
    if (records_read(path, 1, &recs)) die("%s", ld_last_error());
    d->v = ld_xcalloc((size_t)recs.n, sizeof(TrainRecord));
    for (int i = 0; i < recs.n; i++) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(recs.v[i].json, "messages");
        int n = cJSON_GetArraySize(msgs), k = 0;
        ChatMessage *cm = ld_xcalloc((size_t)n, sizeof(ChatMessage));
        for (const cJSON *x = msgs->child; x; x = x->next, k++)
            cm[k] = (ChatMessage){cJSON_GetObjectItemCaseSensitive(x, "role")->valuestring,
                                  cJSON_GetObjectItemCaseSensitive(x, "content")->valuestring};
        TrainRecord r;
        if (train_record_from_chat(m, ct, cm, n, o->full_seq, &r)) die("%s: record %s: %s", path, recs.v[i].id, ld_last_error());
        free(cm);
        if (r.n > o->max_len) {
            if (!strcmp(o->long_records, "error"))
                die("%s: record %s has %d tokens, more than --max-len %d", path, recs.v[i].id, r.n, o->max_len);
            if (!strcmp(o->long_records, "skip")) {
                d->skipped++;
                train_record_free(&r);
                continue;
            }
            r.n = o->max_len;  // truncate
            r.targets[r.n - 1] = -100;
            d->truncated++;
        }
        d->v[d->n++] = r;
    }
    records_free(&recs);
    if (!d->n) die("%s: no usable records (%d longer than --max-len %d were skipped)", path, d->skipped, o->max_len);
    if (d->skipped || d->truncated)
        fprintf(stderr, "train: %s: %d records longer than %d tokens %s\n", path, d->skipped + d->truncated, o->max_len,
                d->skipped ? "skipped" : "truncated");
}

// Packs records (in `order`) greedily into batches of at most cap tokens.
typedef struct {
    int *tokens, *targets, *positions, *starts, n_records, T;
} Packed;

static int pack(const Dataset *d, const int *order, int n, int cap, Packed **out) {
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
        *out = ld_xrealloc(*out, sizeof(Packed) * (size_t)(nb + 1));
        (*out)[nb++] = p;
    }
    return nb;
}

static void free_packed(Packed *p, int n) {
    for (int i = 0; i < n; i++) free(p[i].tokens), free(p[i].targets), free(p[i].positions), free(p[i].starts);
    free(p);
}

static double eval_loss(const Model *m, const Lora *l, GpuTrainer *gpu, Packed *b, int nb) {  // l NULL: full fine-tuning
    double sum = 0;
    long cnt = 0;
    for (int i = 0; i < nb; i++) {
        TrainBatch tb = {b[i].tokens, b[i].targets, b[i].positions, b[i].starts, b[i].T, b[i].n_records};
        int c;
        float loss;
        if (gpu) {  // the GPU step computes gradients too: they are cleared before the next training step
            loss = gpu_trainer_loss_and_grad(gpu, &tb, &c, 0, 0);
            gpu_trainer_zero_grad(gpu);
        } else {
            loss = train_loss_and_grad(m, l, NULL, NULL, &tb, &c);
        }
        sum += (double)loss * c, cnt += c;
    }
    return cnt ? sum / cnt : NAN;
}

// A checkpoint: the trained weights, AdamW's moments and step (state.safetensors) and the data position
// (state.json) in DIR/checkpoint — written beside, then renamed over the old one, so a kill -9 leaves either the
// old or the new checkpoint, never half of one.
static int save_checkpoint(const char *dir, const AdamW *opt, int step) {
    char *ck = ld_path_join(dir, "checkpoint"), *tmp = ld_path_join(dir, "checkpoint.tmp");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    int rc = system(cmd) != 0 || ld_mkdir_p(tmp) ? -1 : 0;
    char *st = ld_path_join(tmp, "state.safetensors"), *js = ld_path_join(tmp, "state.json"), *jtmp;
    if (!rc) rc = adamw_save(opt, st);
    FILE *f = rc ? NULL : ld_atomic_open(js, &jtmp);
    if (f) rc = ld_atomic_commit(f, jtmp, js, fprintf(f, "{\"step\": %d}\n", step) > 0);
    else rc = -1;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ck);
    if (!rc && (system(cmd) != 0 || rename(tmp, ck))) rc = -1;
    if (rc) ld_set_error("%s: cannot write the checkpoint", ck);
    free(st), free(js), free(ck), free(tmp);
    return rc;
}

static int load_checkpoint(const char *dir, AdamW *opt, int *step) {
    char *ck = ld_path_join(dir, "checkpoint"), *st = ld_path_join(ck, "state.safetensors"), *js = ld_path_join(ck, "state.json");
    int rc = -1;
    char *txt = ld_read_file(js, NULL);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
    if (!cJSON_IsNumber(s)) ld_set_error("%s: no usable checkpoint to resume from", ck);
    else if (!adamw_load(opt, st)) rc = 0, *step = s->valueint;
    cJSON_Delete(j);
    free(txt), free(ck), free(st), free(js);
    return rc;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

int cmd_train(int argc, char **argv) {
    if (has_run_flag(argc, argv)) return run_stage_command(argc, argv, "train");
    Args a = {argc, argv, 1, "train"};
    TrainOpts o = {.method = "lora", .device = "auto", .precision = "fp32", .rank = 8, .alpha = -1, .targets = "all-linear", .epochs = 3, .lr = -1, .schedule = "cosine", .warmup = 0.1f,
                   .max_grad_norm = 1.0f, .tokens_per_step = 1024, .grad_accum = 1, .max_len = 1024, .long_records = "skip", .seed = 1, .save_every = 20, .dropout = 0.05f};
    const char *config = NULL;
    for (int i = 1; i + 1 < argc; i++)  // a config first, so flags can override it
        if (!strcmp(argv[i], "--config")) config = argv[i + 1];
    if (config) apply_yaml(config, &o);
    while (a.i < argc) {
        const char *v;
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("%s", k_help);
            return 0;
        }
        if (arg_value(&a, "--config", &v) || arg_value(&a, "--model", &o.model) || arg_value(&a, "--train", &o.train) ||
            arg_value(&a, "--val", &o.val) || arg_value(&a, "--out", &o.out) || arg_value(&a, "--targets", &o.targets) ||
            arg_value(&a, "--schedule", &o.schedule) || arg_value(&a, "--long-records", &o.long_records) ||
            arg_value(&a, "--chat-template", &o.chat_template) || arg_value(&a, "--method", &o.method) ||
            arg_value(&a, "--init-adapter", &o.init_adapter) || arg_value(&a, "--device", &o.device) || arg_value(&a, "--precision", &o.precision) || arg_int(&a, "--rank", &o.rank, 1, 1024) ||
            arg_float(&a, "--alpha", &o.alpha, 0, 1e6f) || arg_float(&a, "--dropout", &o.dropout, 0, 0.95f) || arg_int(&a, "--epochs", &o.epochs, 1, 100000) ||
            arg_float(&a, "--lr", &o.lr, 0, 10) || arg_float(&a, "--warmup", &o.warmup, 0, 1) ||
            arg_float(&a, "--weight-decay", &o.weight_decay, 0, 10) || arg_float(&a, "--max-grad-norm", &o.max_grad_norm, 0, 1e6f) ||
            arg_int(&a, "--tokens-per-step", &o.tokens_per_step, 8, 1 << 20) || arg_int(&a, "--grad-accum", &o.grad_accum, 1, 4096) ||
            arg_int(&a, "--max-len", &o.max_len, 8, 1 << 20) || arg_int(&a, "--seed", &o.seed, 0, 2147483647) ||
            arg_int(&a, "--eval-every", &o.eval_every, 0, 1 << 30) || arg_int(&a, "--threads", &o.threads, 1, 1024) ||
            arg_int(&a, "--save-every", &o.save_every, 0, 1 << 30))
            continue;
        if (arg_flag(&a, "--rslora")) o.rslora = 1;
        else if (arg_flag(&a, "--full-sequence-loss")) o.full_seq = 1;
        else if (arg_flag(&a, "--resume")) o.resume = 1;
        else if (arg_flag(&a, "--check")) o.check = 1;
        else arg_unknown(&a);
    }
    if ((!o.model || !o.train || !o.out) && !o.check) die("train needs --model, --train and --out (see llamaduo train --help)");
    if (strcmp(o.schedule, "cosine") && strcmp(o.schedule, "linear") && strcmp(o.schedule, "constant"))
        die("--schedule must be cosine, linear or constant, not '%s'", o.schedule);
    if (strcmp(o.long_records, "skip") && strcmp(o.long_records, "truncate") && strcmp(o.long_records, "error"))
        die("--long-records must be skip, truncate or error, not '%s'", o.long_records);
    if (strcmp(o.method, "lora") && strcmp(o.method, "full")) die("--method must be lora or full, not '%s'", o.method);
    int full = !strcmp(o.method, "full");
    if (o.lr < 0) o.lr = full ? 1e-5f : 2e-4f;
    if (o.init_adapter && full) die("--init-adapter is for LoRA training, not --method full");
    if (strcmp(o.device, "auto") && strcmp(o.device, "cuda") && strcmp(o.device, "cpu"))
        die("--device must be auto, cuda or cpu, not '%s'", o.device);
    int bf16 = precision_bf16(o.precision);
    if (!strcmp(o.device, "cuda") && full) die("--device cuda trains LoRA; full fine-tuning runs on the CPU for now (--device cpu)");
    if (o.check) {
        parse_targets(o.targets);
        cJSON_Delete(g_config);
        return 0;
    }
    if (o.max_len > o.tokens_per_step) o.max_len = o.tokens_per_step;  // a record must fit one packed step
    if (o.alpha < 0) o.alpha = 2.0f * o.rank;
    unsigned mask = parse_targets(o.targets);
    set_threads(o.threads);
    Model *m = load_model_or_die(o.model);
    ChatTemplate ct;
    chat_template_or_die(m, o.chat_template, &ct);
    Dataset train, val = {0};
    load_dataset(m, &ct, o.train, &o, &train);
    if (o.val) load_dataset(m, &ct, o.val, &o, &val);
    Lora *lora = NULL, *grad = NULL;
    Model *mgrad = NULL;
    Param *params;
    int n_params;
    if (full) {
        model_make_trainable(m);
        mgrad = model_grad_new(m);
        n_params = model_params(m, mgrad, &params);
    } else {  // LoRA as PEFT initialises it: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0
        lora = lora_new(&m->cfg, o.rank, o.alpha, o.rslora, mask), grad = lora_new(&m->cfg, o.rank, o.alpha, o.rslora, mask);
        uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)o.seed;
        for (int i = 0; i < lora->n_layers * LT_COUNT; i++) {
            LoraPair *p = &lora->w[i];
            if (!p->A) continue;
            float bound = 1.0f / sqrtf((float)p->in);
            for (size_t k = 0; k < (size_t)o.rank * p->in; k++) p->A[k] = ((float)(rng_next(&rng) >> 11) / 9007199254740992.0f * 2 - 1) * bound;
        }
        lora->dropout = o.dropout;
        if (o.init_adapter) {  // continue from an earlier adapter (the loop's retrain: continue)
            Lora *init = lora_load_peft(&m->cfg, o.init_adapter);
            if (!init) die("%s", ld_last_error());
            if (init->rank != lora->rank) die("%s: rank %d, but this training uses rank %d", o.init_adapter, init->rank, lora->rank);
            for (int i = 0; i < lora->n_layers * LT_COUNT; i++) {
                LoraPair *p = &lora->w[i], *q = &init->w[i];
                if (!p->A != !q->A) die("%s: targets other modules than --targets %s", o.init_adapter, o.targets);
                if (!p->A) continue;
                memcpy(p->A, q->A, sizeof(float) * (size_t)o.rank * p->in);
                memcpy(p->B, q->B, sizeof(float) * (size_t)o.rank * p->out);
            }
            lora_free(init);
        }
        n_params = lora_params(lora, grad, &params);
    }
    AdamW *opt = adamw_new(params, n_params);
    size_t n_trained = 0;
    for (int i = 0; i < n_params; i++) n_trained += params[i].n;
    int *order = ld_xmalloc(sizeof(int) * (size_t)train.n);
    Packed *vb = NULL;
    int nvb = 0;
    if (val.n) {
        int *vo = ld_xmalloc(sizeof(int) * (size_t)val.n);
        for (int i = 0; i < val.n; i++) vo[i] = i;
        nvb = pack(&val, vo, val.n, o.tokens_per_step, &vb);
        free(vo);
    }
    // every epoch packs its own shuffled order; all are laid out up front so the schedule knows the step count
    Packed **epochs = ld_xcalloc((size_t)o.epochs, sizeof(Packed *));
    int *n_packed = ld_xcalloc((size_t)o.epochs, sizeof(int)), total = 0, per_epoch = 0;
    for (int ep = 0; ep < o.epochs; ep++) {
        uint64_t srng = ((uint64_t)o.seed << 20) ^ (uint64_t)(ep + 1) * 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < train.n; i++) order[i] = i;
        for (int i = train.n - 1; i > 0; i--) {
            int j = (int)(rng_next(&srng) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        n_packed[ep] = pack(&train, order, train.n, o.tokens_per_step, &epochs[ep]);
        total += (n_packed[ep] + o.grad_accum - 1) / o.grad_accum;
        per_epoch = n_packed[ep];
    }
    int warm = (int)ceilf(o.warmup * total);
    if (ld_mkdir_p(o.out)) die("%s", ld_last_error());
    char *mpath = ld_path_join(o.out, "metrics.jsonl");
    int start_step = 0;
    if (o.resume) {
        if (load_checkpoint(o.out, opt, &start_step)) die("%s", ld_last_error());
        // keep the metrics written up to the checkpoint; the steps after it are done again
        cJSON **lines;
        int *lnos, nl;
        if (jsonl_read(mpath, &lines, &lnos, &nl, 1)) die("%s", ld_last_error());
        FILE *rf = fopen(mpath, "w");
        if (!rf) die("%s: cannot write", mpath);
        for (int i = 0; i < nl; i++) {
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(lines[i], "step");
            if (cJSON_IsNumber(st) && st->valueint <= start_step) {
                char *t = cJSON_PrintUnformatted(lines[i]);
                fprintf(rf, "%s\n", t);
                free(t);
            }
            cJSON_Delete(lines[i]);
        }
        free(lines), free(lnos);
        fclose(rf);
        fprintf(stderr, "train: resuming after step %d from %s/checkpoint\n", start_step, o.out);
    }
    GpuTrainer *gpu = NULL;  // LoRA on the GPU: the adapter and its optimiser state live there
    int want_gpu = !strcmp(o.device, "cuda") || (!strcmp(o.device, "auto") && !full && ld_cuda_device_count() > 0);
    if (want_gpu) {
        if (!(gpu = gpu_trainer_new(m, lora, bf16 ? LD_BF16 : LD_F32))) die("--device cuda: %s", ld_last_error());
        if (start_step && gpu_trainer_load_state(gpu, opt)) die("%s", ld_last_error());
        char desc[256] = "";
        ld_cuda_device_describe(0, desc, sizeof desc);
        fprintf(stderr, "train: on the GPU (%s), base weights in %s\n", desc, bf16 ? "bf16" : "fp32");
    } else if (!strcmp(o.device, "auto") && ld_cuda_device_count() > 0) {
        fprintf(stderr, "train: on the CPU (the GPU path has no full fine-tuning yet)\n");
    }
    FILE *mf = fopen(mpath, o.resume ? "a" : "w");
    if (!mf) die("%s: cannot write", mpath);
    fprintf(stderr, "train: %d records (%d val), %d packed sequences of <= %d tokens per epoch, %d epochs, %d steps; ", train.n,
            val.n, per_epoch, o.tokens_per_step, o.epochs, total);
    if (full) fprintf(stderr, "full fine-tuning of %.1fM parameters\n", n_trained / 1e6);
    else fprintf(stderr, "LoRA r=%d alpha=%g dropout=%g on %s (%.2fM parameters)\n", o.rank, o.alpha, o.dropout, o.targets, n_trained / 1e6);
    double v0 = nvb && !start_step ? eval_loss(m, lora, gpu, vb, nvb) : NAN;
    if (nvb && !start_step) {
        fprintf(stderr, "train: validation loss before training %.4f\n", v0);
        fprintf(mf, "{\"step\": 0, \"val_loss\": %.6f}\n", v0);
    }
    int step = 0, tty = isatty(2);
    double t0 = ld_time_s();
    long tokens_seen = 0;  // this run's (a resumed run counts from the checkpoint)
    for (int ep = 0; ep < o.epochs; ep++) {
        Packed *pb = epochs[ep];
        int npb = n_packed[ep];
        for (int b0 = 0; b0 < npb; b0 += o.grad_accum) {
            if (step < start_step) {  // done before the checkpoint
                step++;
                continue;
            }
            if (gpu) gpu_trainer_zero_grad(gpu);
            else adamw_zero_grad(opt);
            if (lora) lora->dropout_seed = ((uint64_t)o.seed << 32) ^ (uint64_t)step;  // fresh masks each step, same on a rerun
            double loss = 0;
            int nmb = 0;
            for (int b = b0; b < npb && b < b0 + o.grad_accum; b++, nmb++) {
                TrainBatch tb = {pb[b].tokens, pb[b].targets, pb[b].positions, pb[b].starts, pb[b].T, pb[b].n_records};
                int c;
                loss += gpu ? gpu_trainer_loss_and_grad(gpu, &tb, &c, 1, lora->dropout_seed) : train_loss_and_grad(m, lora, grad, mgrad, &tb, &c);
                tokens_seen += pb[b].T;
            }
            loss /= nmb;
            if (nmb > 1) {
                if (gpu) gpu_trainer_scale_grad(gpu, 1.0f / nmb);
                else adamw_scale_grad(opt, 1.0f / nmb);
            }  // the mean of the micro-batches' mean losses
            float lr = o.lr;
            if (step < warm) lr = o.lr * (step + 1) / warm;
            else if (!strcmp(o.schedule, "cosine")) lr = o.lr * 0.5f * (1 + cosf((float)M_PI * (step - warm) / fmaxf(1, total - warm)));
            else if (!strcmp(o.schedule, "linear")) lr = o.lr * (1 - (float)(step - warm) / fmaxf(1, total - warm));
            double norm = gpu ? gpu_trainer_adamw(gpu, lr, 0.9f, 0.999f, 1e-8f, o.weight_decay, o.max_grad_norm)
                              : adamw_step(opt, lr, 0.9f, 0.999f, 1e-8f, o.weight_decay, o.max_grad_norm);
            if (isnan(loss)) die("training step %d: %s", step + 1, ld_last_error());
            step++;
            double dt = ld_time_s() - t0, tps = tokens_seen / dt, eta = dt / step * (total - step);
            double vl = NAN;
            int do_eval = nvb && ((o.eval_every && step % o.eval_every == 0) || (!o.eval_every && b0 + o.grad_accum >= npb) || step == total);
            if (do_eval) vl = eval_loss(m, lora, gpu, vb, nvb);
            fprintf(mf, "{\"step\": %d, \"epoch\": %d, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"tokens\": %ld, "
                        "\"tokens_per_s\": %.1f%s", step, ep + 1, loss, lr, norm, tokens_seen, tps, do_eval ? ", \"val_loss\": " : "");
            if (do_eval) fprintf(mf, "%.6f", vl);
            fprintf(mf, "}\n");
            fflush(mf);
            if (tty && !do_eval)
                fprintf(stderr, "\rtrain: step %d/%d epoch %d loss %.4f lr %.2e |g| %.3f %.0f tok/s ETA %.0fs   ", step, total, ep + 1, loss, lr, norm, tps, eta);
            else
                fprintf(stderr, "%strain: step %d/%d epoch %d loss %.4f lr %.2e |g| %.3f %.0f tok/s ETA %.0fs%s\n", tty ? "\r" : "", step,
                        total, ep + 1, loss, lr, norm, tps, eta, "");
            if (do_eval) fprintf(stderr, "train: validation loss %.4f\n", vl);
            if (o.save_every && step % o.save_every == 0 && step < total &&
                ((gpu && gpu_trainer_save_state(gpu, opt)) || save_checkpoint(o.out, opt, step)))
                die("%s", ld_last_error());
        }
        free_packed(pb, npb);
    }
    free(epochs), free(n_packed);
    fclose(mf);
    if (gpu && gpu_trainer_save_state(gpu, opt)) die("%s", ld_last_error());
    gpu_trainer_free(gpu);
    char *adir = ld_path_join(o.out, full ? (model_gguf(m) ? "model.gguf" : "model") : "adapter");
    int nt, nm, rc = !full ? lora_save_peft(lora, adir, o.model)
                    : model_gguf(m) ? export_gguf(m, NULL, LD_F32, adir, &nt, &nm) : export_hf(m, NULL, adir, &nt, &nm);
    if (rc) die("%s", ld_last_error());
    fprintf(stderr, "train: done in %.1fs; %s -> %s, metrics -> %s\n", ld_time_s() - t0, full ? "model" : "adapter", adir, mpath);
    free(adir), free(mpath), free(order);
    free_packed(vb, nvb);
    for (int i = 0; i < train.n; i++) train_record_free(&train.v[i]);
    for (int i = 0; i < val.n; i++) train_record_free(&val.v[i]);
    free(train.v), free(val.v);
    lora_free(lora), lora_free(grad), adamw_free(opt), model_free(mgrad);
    chat_template_free(&ct);
    model_free(m);
    cJSON_Delete(g_config);
    return 0;
}
