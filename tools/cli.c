#include "cli.h"

#include "cuda_device.h"
#include "dist.h"

#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lora.h"
#include "util.h"

static Dist *g_ranks;  // a data-parallel run this process is a rank of (die_ends_ranks)

void die_ends_ranks(Dist *d) { g_ranks = d; }

Dist *join_ranks_or_die(char **args, int ranks, const char *flag, const DistOptions *o, int *threads) {
    DistPlace at;
    if (dist_place_from_env(&at)) die("%s", ld_last_error());
    if (ranks > 1 && at.world == 1) {
        if (getenv("LLAMADUO_LAUNCHED")) die("a rank that llamaduo started sees %d rank%s, not %d", at.world, at.world == 1 ? "" : "s", ranks);
        dist_launch(ranks, args);
        die("%s", ld_last_error());
    }
    if (ranks && at.world > 1 && ranks != at.world) die("--%s %d, but %s started %d ranks", flag, ranks, at.launcher, at.world);
    Dist *d = dist_open(o);
    if (!d) die("%s", ld_last_error());
    die_ends_ranks(d);
    const DistPlace *p = dist_place(d);
    // a rank whose launcher bound it to some cores (srun's CPU binding) already sees its share
    int cores = omp_get_num_procs(), bound = cores < sysconf(_SC_NPROCESSORS_ONLN);
    if (*threads == 0 && p->local_world > 1) {
        int per = bound ? cores : cores / p->local_world;
        *threads = per > 0 ? per : 1;
    }
    return d;
}

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "llamaduo: error: ");
    if (g_ranks && dist_place(g_ranks)->world > 1) fprintf(stderr, "rank %d: ", dist_place(g_ranks)->rank);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (g_ranks) dist_abort(g_ranks, 1);
    exit(1);
}

int arg_value(Args *a, const char *name, const char **val) {
    const char *s = a->argv[a->i];
    size_t n = strlen(name);
    if (strncmp(s, name, n)) return 0;
    if (s[n] == '=') {
        *val = s + n + 1;
        a->i++;
        return 1;
    }
    if (s[n]) return 0;
    if (a->i + 1 >= a->argc) {
        fprintf(stderr, "llamaduo %s: %s needs a value (see llamaduo %s --help)\n", a->cmd, name, a->cmd);
        exit(2);
    }
    *val = a->argv[a->i + 1];
    a->i += 2;
    return 1;
}

int arg_flag(Args *a, const char *name) {
    if (strcmp(a->argv[a->i], name)) return 0;
    a->i++;
    return 1;
}

int arg_int(Args *a, const char *name, int *out, int lo, int hi) {
    const char *v;
    if (!arg_value(a, name, &v)) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "llamaduo %s: %s must be an integer in [%d, %d], got '%s'\n", a->cmd, name, lo, hi, v);
        exit(2);
    }
    *out = (int)x;
    return 1;
}

int arg_float(Args *a, const char *name, float *out, float lo, float hi) {
    const char *v;
    if (!arg_value(a, name, &v)) return 0;
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "llamaduo %s: %s must be a number in [%g, %g], got '%s'\n", a->cmd, name, lo, hi, v);
        exit(2);
    }
    *out = (float)x;
    return 1;
}

void arg_unknown(Args *a) {
    fprintf(stderr, "llamaduo %s: unknown argument '%s' (see llamaduo %s --help)\n", a->cmd, a->argv[a->i], a->cmd);
    exit(2);
}

void set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);  // OpenBLAS itself stays single-threaded (kernels/cpu/matmul.c)
}

const char *k_gen_options_help =
    "  --model PATH            HF model directory or .gguf file (required)\n"
    "  --adapter DIR           a PEFT LoRA adapter directory, applied without merging\n"
    "  --max-tokens N          new tokens per answer (default 256)\n"
    "  --temperature T         0 = greedy (default 0)\n"
    "  --top-k K --top-p P --min-p P --repeat-penalty R   sampling filters (off by default)\n"
    "  --frequency-penalty F --presence-penalty P   OpenAI's, -2..2 (default 0): logit -= count·F + (count > 0)·P\n"
    "                          over the tokens generated so far\n"
    "  --seed N                RNG seed (default 0); sample k of a prompt uses stream k\n"
    "  --stop TEXT             stop string (repeatable); EOS/end-of-turn tokens always stop\n"
    "  --batch N               sequences decoded together (default 16)\n"
    "  --chat-template FAMILY  llama3 | gemma | chatml | mistral (default: recognised from the model)\n"
    "  --system TEXT           system message for chat prompts\n"
    "  --raw                   send prompts as plain text, without the chat template\n"
    "  --device auto|cuda|cpu  where the model runs (default auto: the GPU when one is found)\n"
    "  --precision bf16|fp32   the GPU's weights and matrix products (default bf16: half the weights' memory, tensor\n"
    "                          cores, fp32 accumulation; fp32: true fp32, the reference). The CPU computes in fp32\n"
    "  --threads N             CPU threads (default: all cores)\n";

void gen_options_init(GenOptions *o) {
    memset(o, 0, sizeof *o);
    o->gen = gen_defaults();
    o->samples = 1;
    o->device = "auto", o->precision = "bf16";
}

int gen_options_parse(Args *a, GenOptions *o) {
    int v;
    const char *s;
    if (arg_value(a, "--model", &o->model)) return 1;
    if (arg_value(a, "--adapter", &o->adapter)) return 1;
    if (arg_int(a, "--max-tokens", &o->gen.max_new_tokens, 0, 1 << 20)) return 1;
    if (arg_float(a, "--temperature", &o->gen.sampler.temperature, 0, 100)) return 1;
    if (arg_int(a, "--top-k", &o->gen.sampler.top_k, 0, 1 << 30)) return 1;
    if (arg_float(a, "--top-p", &o->gen.sampler.top_p, 0, 1)) return 1;
    if (arg_float(a, "--min-p", &o->gen.sampler.min_p, 0, 1)) return 1;
    if (arg_float(a, "--repeat-penalty", &o->gen.sampler.repeat_penalty, 0.01f, 100)) return 1;
    if (arg_float(a, "--frequency-penalty", &o->gen.sampler.frequency_penalty, -2, 2)) return 1;
    if (arg_float(a, "--presence-penalty", &o->gen.sampler.presence_penalty, -2, 2)) return 1;
    if (arg_int(a, "--seed", &v, 0, 2147483647)) {
        o->gen.sampler.seed = (uint64_t)v;
        return 1;
    }
    if (arg_value(a, "--stop", &s)) {
        if (o->n_stops == 16) die("at most 16 --stop strings");
        o->stops[o->n_stops++] = s;
        return 1;
    }
    if (arg_int(a, "--batch", &o->gen.max_batch, 1, 4096)) return 1;
    if (arg_value(a, "--chat-template", &o->chat_template)) return 1;
    if (arg_value(a, "--system", &o->system)) return 1;
    if (arg_value(a, "--device", &o->device)) return 1;
    if (arg_value(a, "--precision", &o->precision)) return 1;
    if (arg_flag(a, "--raw")) return o->raw = 1;
    if (arg_int(a, "--threads", &o->threads, 1, 1024)) return 1;
    return 0;
}

int device_choose(const char *device) {
    if (!strcmp(device, "cpu")) return 0;
    if (strcmp(device, "auto") && strcmp(device, "cuda")) die("--device must be auto, cuda or cpu, not '%s'", device);
    int n = ld_cuda_device_count();
    if (!n && !strcmp(device, "cuda")) die("--device cuda: no CUDA device found (or this build has no CUDA backend)");
    if (n) {
        char desc[256] = "";
        ld_cuda_device_describe(0, desc, sizeof desc);
        fprintf(stderr, "llamaduo: on the GPU (%s)\n", desc);
    }
    return n > 0;
}

int precision_bf16(const char *precision) {
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) die("--precision must be fp32 or bf16, not '%s'", precision);
    return !strcmp(precision, "bf16");
}

Model *load_model_or_die(const char *path) {
    if (!path) die("--model PATH is required");
    double t0 = ld_time_s();
    Model *m = model_load(path);
    if (!m) die("%s", ld_last_error());
    if (!g_ranks || dist_place(g_ranks)->rank == 0)  // one line for the whole run
        fprintf(stderr, "llamaduo: loaded %s (%s, %d layers, dim %d, vocab %d) in %.1fs\n", path, arch_name(m->cfg.arch), m->cfg.n_layers,
                m->cfg.dim, m->cfg.vocab, ld_time_s() - t0);
    return m;
}

void attach_adapter_or_die(Model *m, const char *dir) {
    if (!dir) return;
    Lora *a = lora_load_peft(&m->cfg, dir);
    if (!a) die("%s", ld_last_error());
    m->adapter = a;  // the model owns it now
    fprintf(stderr, "llamaduo: adapter %s (rank %d, scale %g)\n", dir, a->rank, a->scale);
}

void chat_template_or_die(const Model *m, const char *override, ChatTemplate *out) {
    if (chat_template_init(out, m->chat_template, override)) die("%s: %s", m->path, ld_last_error());
}

int encode_chat(const Model *m, const ChatRendered *r, int **ids) {
    return tok_encode_protected(m->tok, r->text, r->len, TOK_PARSE_SPECIAL, r->content_spans, r->n_content, ids);
}
