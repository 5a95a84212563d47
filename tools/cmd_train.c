// llamaduo train: turns the command line (and a YAML config's `train:` section) into TrainOptions and runs
// engine/trainer.h on the records engine/train_data.h reads, printing its progress.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "cuda_device.h"
#include "dist.h"
#include "trainer.h"
#include "util.h"

static const char *k_help_head =
    "usage: llamaduo train --model PATH --train TRAIN.jsonl --out DIR [options]   (or --config FILE.yaml)\n\n"
    "Fine-tunes a LoRA adapter on chat records ({\"messages\": [...]}; loss on assistant turns) and writes DIR/adapter\n"
    "(PEFT format: adapter_config.json + adapter_model.safetensors) and DIR/metrics.jsonl (one line per step).\n"
    "Options (a YAML --config holds the same settings under `train:`, with underscores; flags after it override it):\n";
static const char *k_help_tail =
    "  --resume                           continue after a crash from DIR/checkpoint, with the same losses\n"
    "  --check                            check the settings and exit (nothing is loaded or written)\n"
    "Data-parallel (every rank takes a share of each step's tokens_per_step; the losses are one process's):\n"
    "  --ranks N                          N CPU ranks on this machine (started with mpirun)\n"
    "  --gpus N|all                       one rank per GPU on this machine (--device cuda)\n"
    "  --dist-timeout SECONDS             how long a rank waits for the others in a collective (default 300)\n"
    "  --dist-init auto|mpi|tcp://HOST:PORT|file:PATH\n"
    "                                     how ranks you start yourself meet (default auto: MPI under mpirun or srun\n"
    "                                     --mpi=pmix; else TCP at MASTER_ADDR:MASTER_PORT, or through a file in --out)\n"
    "  (or start the ranks yourself: mpirun -np N llamaduo train ..., srun llamaduo train ..., or any launcher that\n"
    "  sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)\n";

typedef struct {  // how the ranks are had
    int ranks;  // --ranks / --gpus (0: as launched)
    int gpus;  // --gpus given
    DistOptions dist;  // --dist-timeout, --dist-init
} Launch;

static void load_data(const Model *m, const ChatTemplate *ct, const char *path, const TrainOptions *o, int rank, TrainData *d) {
    if (train_data_load(m, ct, path, o->full_sequence_loss, o->max_len, o->long_records, d)) die("%s", ld_last_error());
    if (!rank && (d->skipped || d->truncated))
        fprintf(stderr, "train: %s: %d records longer than %d tokens %s\n", path, d->skipped + d->truncated, o->max_len,
                d->skipped ? "skipped" : "truncated");
}

// One schema option from argv[i] (`--key VALUE`, `--key=VALUE`, or a bare `--flag` for a boolean): 1 when it was one.
static int parse_option(Args *a, TrainOptions *o) {
    const char *arg = a->argv[a->i], *eq = strchr(arg, '='), *v;
    char flag[64];
    snprintf(flag, sizeof flag, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
    const OptionSpec *s = options_find_flag(k_train_options, flag);
    if (!s) return 0;
    if (s->type == OPT_BOOL && !eq)
        v = "true", a->i++;
    else
        arg_value(a, flag, &v);
    if (options_set_text(s, o, v)) die("%s", ld_last_error());
    return 1;
}

static cJSON *g_config;  // the options' strings point into it: freed when training is done

static void apply_yaml(const char *path, TrainOptions *o) {
    cJSON *root = g_config = config_load(path);
    static const char *const top[] = {"train", NULL};
    if (!root || cfg_check_keys(root, "", top, path) ||
        train_options_from_json(o, cJSON_GetObjectItemCaseSensitive(root, "train"), "train", path))
        die("%s", ld_last_error());
}

// A step's line: overwritten in place on a terminal, one line each otherwise (logs), and a line of its own for
// every validation loss.
static void print_step(const TrainProgress *p, void *ctx) {
    int tty = *(const int *)ctx;
    if (p->step == 0) {
        fprintf(stderr, "train: validation loss before training %.4f\n", p->val_loss);
        return;
    }
    fprintf(stderr, "%strain: step %d/%d epoch %d loss %.4f lr %.2e |g| %.3f %.0f tok/s ETA %.0fs%s", tty ? "\r" : "", p->step, p->total,
            p->epoch, p->loss, p->lr, p->grad_norm, p->tokens_per_s, p->eta_s, tty && !p->evaluated ? "   " : "\n");
    if (p->evaluated) fprintf(stderr, "train: validation loss %.4f\n", p->val_loss);
}

static void print_setup(const Trainer *t, const TrainOptions *o) {
    TrainerInfo in;
    trainer_info(t, &in);
    if (in.resumed_ranks && in.resumed_ranks != in.ranks)
        fprintf(stderr,
                "train: the checkpoint was written by %d rank%s, this run has %d: it continues with the same batches (the "
                "sums' rounding may differ in the last digits)\n",
                in.resumed_ranks, in.resumed_ranks == 1 ? "" : "s", in.ranks);
    if (strcmp(in.collectives, "none"))
        fprintf(stderr, "train: %d data-parallel rank%s (gradients summed by %s)\n", in.ranks, in.ranks == 1 ? "" : "s", in.collectives);
    if (in.buckets)
        fprintf(stderr, "train: gradients summed during the backward pass, in %d bucket%s (--bucket-mb %g)\n", in.buckets,
                in.buckets == 1 ? "" : "s", o->bucket_mb);
    if (in.zero)
        fprintf(stderr, "train: AdamW's moments sharded over the ranks (ZeRO-1): %.1f MiB on this rank, not %.1f MiB\n",
                in.state_floats * 4.0 / (1 << 20), in.whole_state_floats * 4.0 / (1 << 20));
    if (in.on_gpu)
        fprintf(stderr, "train: on the GPU (%s), %s in %s\n", in.device,
                strcmp(o->method, "full") ? "base weights" : !strcmp(o->precision, "bf16") ? "fp32 masters, GEMMs" : "trained weights",
                o->precision);
    fprintf(stderr, "train: %d records (%d val), %d packed sequences of <= %d tokens per epoch, %d epochs, %d steps; ", in.records,
            in.val_records, in.per_epoch, o->tokens_per_step, o->epochs, in.total_steps);
    if (!strcmp(o->method, "full"))
        fprintf(stderr, "full fine-tuning of %.1fM parameters\n", in.n_params / 1e6);
    else
        fprintf(stderr, "LoRA r=%d alpha=%g dropout=%g on %s (%.2fM parameters)\n", o->rank, o->alpha, o->dropout, o->targets,
                in.n_params / 1e6);
}

// --gpus N|all: the ranks, one per GPU of this machine.
static int gpu_ranks(const char *v) {
    int have = ld_cuda_device_count(), n = !strcmp(v, "all") ? have : atoi(v);
    if (!have) die("--gpus %s: no CUDA device found (this build or this machine has no GPU)", v);
    if (n < 1 || n > have) die("--gpus %s: this machine has %d GPU%s", v, have, have == 1 ? "" : "s");
    return n;
}

static int parse_launch(Args *a, TrainOptions *o, Launch *l) {
    const char *v;
    float t;
    if (arg_int(a, "--ranks", &l->ranks, 1, 4096)) return 1;
    if (arg_float(a, "--dist-timeout", &t, 1, 86400)) return l->dist.timeout_s = t, 1;
    if (arg_value(a, "--dist-init", &l->dist.init)) return 1;
    if (!arg_value(a, "--gpus", &v)) return 0;
    l->ranks = gpu_ranks(v), l->gpus = 1, o->device = "cuda";
    return 1;
}

static void parse_args(int argc, char **argv, TrainOptions *o, int *resume, int *check, Launch *l) {
    Args a = {argc, argv, 1, "train"};
    for (int i = 1; i + 1 < argc; i++)  // a config first, so flags can override it
        if (!strcmp(argv[i], "--config")) apply_yaml(argv[i + 1], o);
    while (a.i < argc) {
        const char *v;
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("%s", k_help_head);
            options_help(k_train_options, stdout);
            printf("%s", k_help_tail);
            exit(0);
        }
        if (arg_value(&a, "--config", &v) || parse_option(&a, o) || parse_launch(&a, o, l)) continue;
        if (arg_flag(&a, "--resume"))
            *resume = 1;
        else if (arg_flag(&a, "--check"))
            *check = 1;
        else
            arg_unknown(&a);
    }
}

int cmd_train(int argc, char **argv) {
    if (has_run_flag(argc, argv)) return run_stage_command(argc, argv, "train");
    TrainOptions o;
    train_options_init(&o);
    int resume = 0, check = 0;
    Launch launch = {0, 0, {300, NULL, NULL}};
    parse_args(argc, argv, &o, &resume, &check, &launch);
    if (train_options_check(&o, !check)) die("%s", ld_last_error());
    if (check) {
        cJSON_Delete(g_config);
        return 0;
    }
    if (o.max_len > o.tokens_per_step) o.max_len = o.tokens_per_step;  // a record must fit one packed step
    launch.dist.dir = o.out;  // every rank sees the output directory (it is where rank 0 writes the result)
    Dist *dist = join_ranks_or_die(argv, launch.ranks, launch.gpus ? "gpus" : "ranks", &launch.dist, &o.threads);
    if (launch.gpus) dist_want_device_collectives(dist);
    int rank = dist_place(dist)->rank;
    set_threads(o.threads);
    Model *m = load_model_or_die(o.model);
    ChatTemplate ct;
    chat_template_or_die(m, o.chat_template, &ct);
    TrainData train, val = {0};
    load_data(m, &ct, o.train, &o, rank, &train);
    if (o.val) load_data(m, &ct, o.val, &o, rank, &val);
    Trainer *t = trainer_new(m, &o, &train, &val, dist);
    if (!t) die("%s", ld_last_error());
    if (resume) {
        int after = trainer_resume(t);
        if (after < 0) die("%s", ld_last_error());
        if (!rank) fprintf(stderr, "train: resuming after step %d from %s/checkpoint\n", after, o.out);
    }
    if (!rank) print_setup(t, &o);
    int tty = isatty(2);
    double t0 = ld_time_s();
    char *out = NULL;
    if (trainer_run(t, rank ? NULL : print_step, &tty) || trainer_save(t, &out) ||
        dist_wait_for_all(dist, "waiting for rank 0 to write the result"))
        die("%s", ld_last_error());
    if (!rank)
        fprintf(stderr, "train: done in %.1fs; %s -> %s, metrics -> %s/metrics.jsonl\n", ld_time_s() - t0,
                !strcmp(o.method, "full") ? "model" : "adapter", out, o.out);
    free(out);
    trainer_free(t);
    train_data_free(&train), train_data_free(&val);
    chat_template_free(&ct);
    model_free(m);
    cJSON_Delete(g_config);
    die_ends_ranks(NULL);
    dist_close(dist);
    return 0;
}
