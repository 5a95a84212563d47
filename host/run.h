// defines: the closed migration loop (design.md §1) over a run directory (§3). A config names the team's
// coverage data, the student, the service LLM and the loop's rules; the run splits the data, measures the
// service LLM's own answers (the ceiling), then per round synthesises data (from round 2), fine-tunes, infers
// and judges until the pass rule holds, the rounds or the budget run out, or scores stop improving. Every stage
// is recorded in the ledger with its inputs and outputs by content hash, so rerunning on the directory resumes
// after a crash with finished stages skipped and no paid request repeated (the response cache).
// The student's stages (train, infer, probe's answers) run as `llamaduo train` / `llamaduo generate` child
// processes, or as Slurm jobs (student.launcher: slurm; slurm.h): this layer never touches a tensor.
#pragma once
#include <cjson/cJSON.h>

#include "ledger.h"
#include "local_server.h"
#include "slurm.h"
#include "stage_config.h"

typedef struct Run {
    const char *self_exe;  // this program, for the student's stages and a local service
    char *dir, *config_path, *config_text;
    cJSON *root;
    StageConfig st;
    // run (the option tables in run.c fill these; strings point into root)
    const char *config_dir, *coverage, *test, *retrain;
    double test_ratio;
    int split_seed, max_rounds, patience, samples, ceiling, retrain_continue;
    int probe;  // training records the student answers after each round, for targeted synthesis
    double min_improvement, budget_usd, synth_growth;
    // student
    const char *student, *infer_precision;  // infer_precision: fp32 | bf16, the GPU's weights when answering
    int threads, infer_max_tokens, infer_batch, infer_seed;
    double infer_temperature;
    const cJSON *train;  // student.train: `llamaduo train` settings
    const char *launcher;  // student.launcher: local | slurm
    SlurmConfig slurm;  // the `slurm:` section (launcher slurm)
    // a service the run starts itself (service.local)
    const char *local_model;
    int local_port, local_parallel, local_ctx;
    LocalServer local;  // service.local, once started
    // report
    double local_monthly_usd, local_usd_per_hour;
    Ledger *ledger;
    int warned_self_preference;  // the judge-wrote-the-data warning, said once per run
} Run;

// Reads and checks the whole config (nothing is written). -1 with an error naming the key and reason.
int run_load(const char *config_path, const char *self_exe, Run *r);
// What a run needs beyond a readable config, checked before anything is written: every API key variable the
// config names is set, and the run directory (dir_override replaces run.dir), if it exists, was started with
// this config. -1 with an error naming the key or the directory.
int run_check(Run *r, const char *dir_override);
// Opens (creating) the run directory: config.yaml copy, ledger. A directory started with another config is
// refused. dir_override replaces run.dir.
int run_open(Run *r, const char *dir_override);
void run_close(Run *r);
// The whole loop, resuming where the directory stands. 0 when it ran to a stop rule.
int run_loop(Run *r);
// One stage on its own: split | ceiling | synth | train | infer | judge | probe | report (round for synth..probe).
int run_stage(Run *r, const char *stage, int round);
// Loads a run from its directory's config.yaml.
int run_from_dir(const char *dir, const char *self_exe, Run *r);
// Where a run stands, printed to stdout.
int run_status(Run *r);
