// defines: what the subcommands share — argument parsing, model loading with the common options, errors.
#pragma once
#include <stdio.h>

#include "chat.h"
#include "dist.h"
#include "generate.h"
#include "model.h"

typedef struct {
    int argc;
    char **argv;
    int i;  // next argument
    const char *cmd;  // subcommand name, for messages
} Args;

// Returns 1 and sets *val when argv[i] is `name VALUE` or `name=VALUE`; advances. Exits 2 on a missing value.
int arg_value(Args *a, const char *name, const char **val);
int arg_flag(Args *a, const char *name);  // a boolean flag
int arg_int(Args *a, const char *name, int *out, int lo, int hi);
int arg_float(Args *a, const char *name, float *out, float lo, float hi);
void arg_unknown(Args *a);  // exits 2 naming the argument

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
// From now on die() names this rank and ends every rank of the run (dist_abort), not this process alone.
void die_ends_ranks(Dist *d);
// This process's place in a data-parallel run. `ranks` > 1 asked for by flag (flag: "ranks" or "gpus", for
// messages) in a process no launcher started: this process becomes their mpirun (args: the subcommand's argv,
// given to every rank). A started rank checks it is one of `ranks` (0: as launched). *threads 0 (all cores)
// becomes this machine's cores shared among its ranks. From here die() ends every rank.
// o: how long a collective waits, and how ranks started by another launcher meet.
Dist *join_ranks_or_die(char **args, int ranks, const char *flag, const DistOptions *o, int *threads);
void set_threads(int n);

// Generation options shared by generate, chat and perplexity-free commands.
typedef struct {
    const char *model, *adapter, *chat_template, *system, *device, *precision;
    int threads, raw, samples;
    GenParams gen;
    const char *stops[16];
    int n_stops;
} GenOptions;
void gen_options_init(GenOptions *o);
int gen_options_parse(Args *a, GenOptions *o);  // 1 when argv[i] was one of them
extern const char *k_gen_options_help;

Model *load_model_or_die(const char *path);
// --device auto|cuda|cpu: 1 to run on the GPU (auto: when one is found; cuda without one exits with the reason)
int device_choose(const char *device);
// --precision fp32|bf16 (the GPU's weights and GEMMs): 1 for bf16; exits on anything else
int precision_bf16(const char *precision);
// Loads a PEFT LoRA directory onto the model (applied on the fly, not merged); exits on error.
void attach_adapter_or_die(Model *m, const char *dir);
// Chat template of a model (override family, or recognised from its template text); exits on error.
void chat_template_or_die(const Model *m, const char *override, ChatTemplate *out);
// Tokenises a rendered conversation (special tokens parsed outside message contents).
int encode_chat(const Model *m, const ChatRendered *r, int **ids);

int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_judge(int argc, char **argv);
int cmd_scrub(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_proxy(int argc, char **argv);
int cmd_capture(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_probe(int argc, char **argv);
// `--run DIR [--round N]`: a stage of a run directory on its own (synth, train, judge, infer)
int has_run_flag(int argc, char **argv);
int run_stage_command(int argc, char **argv, const char *stage);
