#define _GNU_SOURCE
#include "run.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "options.h"
#include "records.h"
#include "report.h"
#include "run_paths.h"
#include "train_options.h"
#include "util.h"

// ---- config ----------------------------------------------------------------------------------------------

// What a path key must name. A model is either kind: an HF directory (config.json in it) or a GGUF file.
typedef enum { PATH_FILE, PATH_MODEL } PathKind;

static int path_needed(const char *path, const char *key, PathKind kind, const char *file) {
    if (!path) return 0;
    const char *want = kind == PATH_FILE ? "a file" : "an HF model directory or a GGUF file";
    if (ld_file_exists(path)) return 0;
    if (!ld_is_dir(path)) {
        ld_set_error("%s: '%s' names %s, which does not exist (it must be %s)", file, key, path, want);
        return -1;
    }
    if (kind == PATH_FILE) {
        ld_set_error("%s: '%s' names %s, a directory (it must be %s)", file, key, path, want);
        return -1;
    }
    char *cfg = ld_path_join(path, "config.json");
    int ok = ld_file_exists(cfg);
    free(cfg);
    if (!ok) ld_set_error("%s: '%s' names the directory %s, which holds no config.json (it must be %s)", file, key, path, want);
    return ok ? 0 : -1;
}

static int check_train_settings(Run *r);

// ---- the run config's own sections (service, task, synth and judge: stage_config.c) ---------------------

#define R(field) offsetof(Run, field)
static const OptionSpec k_loop_options[] = {
    {"dir", OPT_STR, R(config_dir), 0, 0, NULL, NULL, "the run directory (default runs/<config name>)"},
    {"coverage", OPT_STR, R(coverage), 0, 0, NULL, NULL, "the team's seed examples (JSONL chat records)", NULL, 1},
    {"test", OPT_STR, R(test), 0, 0, NULL, NULL, "a held-out test file (default: split from coverage)"},
    {"test_ratio", OPT_NUM, R(test_ratio), 0.01, 0.9, "0.2", NULL, "share of coverage held out for testing"},
    {"split_seed", OPT_INT, R(split_seed), 0, 2147483647, "1", NULL, "the train/test split's seed"},
    {"max_rounds", OPT_INT, R(max_rounds), 1, 1000, "3", NULL, "rounds at most"},
    {"patience", OPT_INT, R(patience), 1, 1000, "2", NULL, "rounds without improvement before stopping"},
    {"min_improvement", OPT_NUM, R(min_improvement), 0, 100, "0.5", NULL, "the mean score's gain that counts as improvement"},
    {"budget_usd", OPT_NUM, R(budget_usd), 0, 1e9, "0", NULL, "service spend at most (leave out for no cap)"},
    {"synth_growth", OPT_NUM, R(synth_growth), 1, 100, "2", NULL, "synth.calls grows by this factor each round"},
    {"retrain", OPT_CHOICE, R(retrain), 0, 0, "base", "base|continue", "each round from the base model, or from the last adapter"},
    {"samples", OPT_INT, R(samples), 1, 64, "2", NULL, "answers per test prompt"},
    {"probe", OPT_INT, R(probe), 0, 1000000, "16", NULL,
     "training records the student answers after each round that did not pass (what targeted synthesis aims at; 0: none)"},
    {"ceiling", OPT_BOOL, R(ceiling), 0, 1, "1", NULL, "judge the service LLM's own answers: the score to match"},
    {NULL}};
static const OptionSpec k_infer_options[] = {
    {"max_tokens", OPT_INT, R(infer_max_tokens), 1, 1 << 20, "256", NULL, "new tokens per answer"},
    {"temperature", OPT_NUM, R(infer_temperature), 0, 2, "0.7", NULL, "sampling temperature"},
    {"seed", OPT_INT, R(infer_seed), 0, 2147483647, "1", NULL, "sampling seed"},
    {"batch", OPT_INT, R(infer_batch), 1, 4096, "16", NULL, "sequences decoded together"},
    {"precision", OPT_CHOICE, R(infer_precision), 0, 0, "bf16", "bf16|fp32", "the GPU's weights when answering"},
    {NULL}};
static const OptionSpec k_student_options[] = {
    {"model", OPT_STR, R(student), 0, 0, NULL, NULL, "the small model to tune: an HF directory or a GGUF file", NULL, 1},
    {"launcher", OPT_CHOICE, R(launcher), 0, 0, "local", "local|slurm", "where train and infer run: here, or as Slurm jobs (slurm:)"},
    {"threads", OPT_INT, R(threads), 0, 1024, "0", NULL, "CPU threads of the student's stages (0: all)"},
    {"train", OPT_MAP, R(train), 0, 0, NULL, NULL, "`llamaduo train` settings (engine/train_options.c)"},
    {"infer", OPT_SECTION, 0, 0, 0, NULL, NULL, "how the student answers the test prompts", k_infer_options},
    {NULL}};
static const OptionSpec k_slurm_options[] = {
    {"partition", OPT_STR, R(slurm.partition), 0, 0, NULL, NULL, "the jobs' partition (default: the cluster's)"},
    {"account", OPT_STR, R(slurm.account), 0, 0, NULL, NULL, "the account they are charged to"},
    {"time", OPT_STR, R(slurm.time), 0, 0, NULL, NULL, "their time limit (sbatch --time: \"4:00:00\")"},
    {"nodes", OPT_INT, R(slurm.nodes), 1, 4096, "1", NULL, "nodes of a training job (more than 1: the run directory is shared)"},
    {"gpus", OPT_INT, R(slurm.gpus), 0, 64, "1", NULL, "GPUs per node (0: CPU jobs)"},
    {"tasks", OPT_INT, R(slurm.tasks), 0, 1024, "0", NULL, "training ranks per node (0: one per GPU, or 1)"},
    {"cpus_per_task", OPT_INT, R(slurm.cpus_per_task), 0, 4096, "0", NULL, "CPUs per rank (sbatch --cpus-per-task; 0: the default)"},
    {"extra", OPT_LIST, R(slurm.extra), 0, 0, NULL, NULL, "further sbatch options, one per item (\"--qos=high\")"},
    {"poll", OPT_NUM, R(slurm.poll_s), 0.1, 3600, "10", NULL, "seconds between looks at a job's state"},
    {NULL}};
static const OptionSpec k_report_options[] = {
    {"local_monthly_usd", OPT_NUM, R(local_monthly_usd), 0, 1e9, "0", NULL, "the local model's monthly cost, for the comparison"},
    {"local_usd_per_hour", OPT_NUM, R(local_usd_per_hour), 0, 1e6, "0", NULL, "or its cost per GPU hour"},
    {NULL}};
static const OptionSpec k_local_options[] = {
    {"model", OPT_STR, R(local_model), 0, 0, NULL, NULL, "the model the run serves as its service LLM", NULL, 1},
    {"port", OPT_INT, R(local_port), 1, 65535, "18765", NULL, "its port"},
    {"parallel", OPT_INT, R(local_parallel), 1, 256, "8", NULL, "sequences it decodes together"},
    {"ctx", OPT_INT, R(local_ctx), 64, 1 << 20, "2048", NULL, "its context per sequence"},
    {NULL}};
#undef R

typedef struct {
    const char *name;
    const OptionSpec *spec;
} RunSection;
static const RunSection k_run_sections[] = {{"run", k_loop_options},
                                            {"student", k_student_options},
                                            {"report", k_report_options},
                                            {"slurm", k_slurm_options},
                                            {"service.local", k_local_options},
                                            {NULL, NULL}};

int run_load(const char *config_path, const char *self_exe, Run *r) {
    memset(r, 0, sizeof *r);
    r->self_exe = self_exe;
    r->local.pid = -1;
    r->config_path = ld_xstrdup(config_path);
    size_t len;
    r->config_text = ld_read_file(config_path, &len);
    if (!r->config_text) return -1;
    r->root = config_load(config_path);
    if (!r->root) return -1;
    static const char *const extra[] = {"run", "student", "report", "slurm", NULL};
    if (stage_config_parse(r->root, config_path, extra, 1, &r->st)) return -1;
    const char *f = config_path;
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(r->root, "run"), *stu = cJSON_GetObjectItemCaseSensitive(r->root, "student");
    if (!run || !stu) {
        ld_set_error("%s: a run config needs 'run' (coverage data and loop rules) and 'student' (the model to tune) sections", f);
        return -1;
    }
    for (int i = 0; k_run_sections[i].spec; i++) options_defaults(k_run_sections[i].spec, r);
    for (int i = 0; k_run_sections[i].spec; i++) {
        const RunSection *sec = &k_run_sections[i];
        const cJSON *obj = strcmp(sec->name, "service.local") ? cJSON_GetObjectItemCaseSensitive(r->root, sec->name) : r->st.local;
        if (options_from_json(sec->spec, r, obj, sec->name, f)) return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(run, "budget_usd") && r->budget_usd <= 0) {
        ld_set_error("%s: 'run.budget_usd' is 0: no service request could be made (leave it out for no cap)", f);
        return -1;
    }
    r->retrain_continue = !strcmp(r->retrain, "continue");
    if (cJSON_GetObjectItemCaseSensitive(r->root, "slurm") && strcmp(r->launcher, "slurm")) {
        ld_set_error("%s: a 'slurm' section, but 'student.launcher' is %s: set it to slurm, or leave the section out", f, r->launcher);
        return -1;
    }
    if (slurm_config_check(&r->slurm, f)) return -1;
    if (!strcmp(r->st.synth.strategy, "targeted") && r->probe == 0) {
        ld_set_error("%s: 'synth.strategy' targeted needs a probe: 'run.probe' is 0 (set it, or synth.strategy: uniform)", f);
        return -1;
    }
    if (r->st.local) {
        if (path_needed(r->local_model, "service.local.model", PATH_MODEL, f)) return -1;
        if (r->st.service.wire != WIRE_OPENAI) {
            ld_set_error("%s: 'service.local' serves the OpenAI wire format: service.provider must be openai", f);
            return -1;
        }
    }
    if (path_needed(r->coverage, "run.coverage", PATH_FILE, f) || path_needed(r->test, "run.test", PATH_FILE, f) ||
        path_needed(r->student, "student.model", PATH_MODEL, f))
        return -1;
    Records rec;  // the data must read cleanly before anything starts
    if (records_read(r->coverage, 1, &rec)) return -1;
    int n = rec.n;
    records_free(&rec);
    if (r->test) {
        if (records_read(r->test, 1, &rec)) return -1;
        records_free(&rec);
    } else if (n < 2) {
        ld_set_error("%s: %d record(s) cannot be split into train and test", r->coverage, n);
        return -1;
    }
    if (r->config_dir) {
        r->dir = ld_xstrdup(r->config_dir);
    } else {  // runs/<config file name without .yaml>
        const char *base = strrchr(config_path, '/');
        base = base ? base + 1 : config_path;
        char name[256];
        snprintf(name, sizeof name, "runs/%s", base);
        char *dot = strrchr(name, '.');
        if (dot && dot > name + 5) *dot = 0;
        r->dir = ld_xstrdup(name);
    }
    return check_train_settings(r);
}

// ---- processes -------------------------------------------------------------------------------------------

static pid_t spawn(Run *r, char *const argv[]) {
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) {
        ld_set_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {  // the child dies with the run (a kill -9 of the run takes its stages along)
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        execv(r->self_exe, argv);
        fprintf(stderr, "run: cannot start %s: %s\n", r->self_exe, strerror(errno));
        _exit(127);
    }
    return pid;
}

static int spawn_wait(Run *r, char *const argv[], const char *what) {
    pid_t pid = spawn(r, argv);
    if (pid < 0) return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            ld_set_error("%s: waitpid: %s", what, strerror(errno));
            return -1;
        }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status))
        ld_set_error("%s failed (exit status %d; its message is above)", what, WEXITSTATUS(status));
    else
        ld_set_error("%s was killed by signal %d", what, WTERMSIG(status));
    return -1;
}

// A child's argv, built by argument rather than counted by hand: argv_add appends its NULL-terminated list, and
// a list that outgrows the room is refused by spawn_argv instead of overflowing.
typedef struct {
    char *v[40];
    int n, overflow;
} Argv;

static void argv_add(Argv *a, ...) {
    va_list ap;
    va_start(ap, a);
    for (char *s = va_arg(ap, char *); s; s = va_arg(ap, char *)) {
        if (a->n + 1 >= (int)(sizeof a->v / sizeof a->v[0]))
            a->overflow = 1;
        else
            a->v[a->n++] = s, a->v[a->n] = NULL;
    }
    va_end(ap);
}

static int spawn_argv(Run *r, Argv *a, const char *what) {
    if (a->overflow) {
        ld_set_error("%s: more arguments than the launcher has room for", what);
        return -1;
    }
    return spawn_wait(r, a->v, what);
}

// student.train read and checked by the trainer's own schema (engine/train_options.h), as `llamaduo train` will
// read it; model, train and out are the loop's to fill in.
static int check_train_settings(Run *r) {
    TrainOptions o;
    train_options_init(&o);
    int rc = r->train ? train_options_from_json(&o, r->train, "student.train", r->config_path) : 0;
    if (!rc && train_options_check(&o, 0)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", ld_last_error());
        ld_set_error("%s: student.train: %s", r->config_path, why);
        rc = -1;
    }
    return rc;
}

static char *pathf(const Run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// A service the run serves itself starts when a stage first needs it; its log is the run's, kept in the run
// directory (appended across resumes), not mixed into the console.
static int ensure_service(Run *r) {
    if (!r->local_model || r->local.pid > 0) return 0;
    char port[16], par[16], ctx[16];
    snprintf(port, sizeof port, "%d", r->local_port);
    snprintf(par, sizeof par, "%d", r->local_parallel);
    snprintf(ctx, sizeof ctx, "%d", r->local_ctx);
    char *argv[] = {"llamaduo", "serve", "--model", (char *)r->local_model,      "--port",  port,   "--parallel", par,
                    "--ctx",    ctx,     "--name",  (char *)r->st.service.model, "--queue", "4096", NULL};
    char *log = pathf(r, RUN_SERVE_LOG);
    fprintf(stderr, "run: starting the local service: %s on port %d (log: %s)\n", r->local_model, r->local_port, log);
    int rc = local_server_start(r->self_exe, argv, r->local_port, log, 120, &r->local);
    free(log);
    if (rc) return -1;
    r->st.service.base_url = r->local.base_url;  // r lives as long as the provider configs that point at it
    if (r->st.judge_is_service) r->st.judges[0].base_url = r->local.base_url;
    return 0;
}

static void stop_service(Run *r) { local_server_stop(&r->local); }

// ---- the directory ----------------------------------------------------------------------------------------

static char *pathf(const Run *r, const char *fmt, ...) {
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    return ld_path_join(r->dir, rel);
}

// A directory keeps the config it was started with: another one would mix two runs' records.
static int same_config(const Run *r) {
    char *cfg = pathf(r, RUN_CONFIG);
    int same = 1;
    if (ld_file_exists(cfg)) {
        char *old = ld_read_file(cfg, NULL);
        same = old && !strcmp(old, r->config_text);
        free(old);
        if (!same)
            ld_set_error("%s was started with another config (%s): resume it with that one, or set run.dir to a new directory", r->dir,
                         cfg);
    }
    free(cfg);
    return same;
}

static void set_dir(Run *r, const char *dir_override) {
    if (dir_override) free(r->dir), r->dir = ld_xstrdup(dir_override);
}

// The key the client will read: set and not empty.
static int key_set(const ProviderConfig *p, const char *where, const char *file) {
    if (!p->api_key_env || !p->api_key_env[0]) return 0;
    const char *v = getenv(p->api_key_env);
    if (v && v[0]) return 0;
    ld_set_error("%s: '%s.api_key_env' names %s, which is not set in the environment (the API key for %s)", file, where, p->api_key_env,
                 p->model);
    return -1;
}

static int keys_set(const Run *r) {
    if (key_set(&r->st.service, "service", r->config_path)) return -1;
    if (r->st.judge_is_service) return 0;
    const cJSON *ju = cJSON_GetObjectItemCaseSensitive(r->root, "judge");
    int listed = cJSON_GetObjectItemCaseSensitive(ju, "services") != NULL;
    for (int j = 0; j < r->st.n_judges; j++) {
        char where[48];
        if (listed)
            snprintf(where, sizeof where, "judge.services[%d]", j);
        else
            snprintf(where, sizeof where, "judge.service");
        if (key_set(&r->st.judges[j], where, r->config_path)) return -1;
    }
    return 0;
}

int run_check(Run *r, const char *dir_override) {
    set_dir(r, dir_override);
    return keys_set(r) || !same_config(r) ? -1 : 0;
}

int run_open(Run *r, const char *dir_override) {
    set_dir(r, dir_override);
    char *data = pathf(r, RUN_DATA_DIR), *rounds = pathf(r, RUN_ROUNDS_DIR), *logs = pathf(r, RUN_LOGS_DIR), *cfg = pathf(r, RUN_CONFIG);
    char *ledger = pathf(r, RUN_LEDGER);
    int rc = -1;
    if (!same_config(r) || ld_mkdir_p(data) || ld_mkdir_p(rounds) || ld_mkdir_p(logs)) goto done;
    if (!ld_file_exists(cfg)) {
        char *tmp;
        FILE *f = ld_atomic_open(cfg, &tmp);  // the config holds key variable names, never keys
        if (!f || ld_atomic_commit(f, tmp, cfg, fputs(r->config_text, f) >= 0)) goto done;
    }
    r->ledger = ledger_open(ledger);
    rc = r->ledger ? 0 : -1;
done:
    free(data), free(rounds), free(logs), free(cfg), free(ledger);
    return rc;
}

int run_from_dir(const char *dir, const char *self_exe, Run *r) {
    char *cfg = ld_path_join(dir, RUN_CONFIG);
    if (!ld_file_exists(cfg)) {
        ld_set_error("%s: not a run directory (no config.yaml)", dir);
        free(cfg);
        return -1;
    }
    int rc = run_load(cfg, self_exe, r);
    free(cfg);
    if (rc) return -1;
    return run_open(r, dir);
}

void run_close(Run *r) {
    stop_service(r);
    ledger_close(r->ledger);
    cJSON_Delete(r->st.local);
    stage_config_free(&r->st);
    cJSON_Delete(r->root);
    free(r->dir), free(r->config_path), free(r->config_text);
    memset(r, 0, sizeof *r);
}

// ---- stage bookkeeping ------------------------------------------------------------------------------------

typedef struct {
    Run *r;
    int round;
    const char *stage;
    double t0;
    ClientStats usage;
    cJSON *detail;
} Stage;

static int stage_begin(Stage *s, Run *r, int round, const char *stage, const char *const *inputs, int n_inputs) {
    memset(s, 0, sizeof *s);
    s->r = r, s->round = round, s->stage = stage, s->t0 = ld_time_s();
    s->detail = cJSON_CreateObject();
    char *in = files_hash_json(inputs, n_inputs);
    int rc = ledger_begin(r->ledger, round, stage, in);
    free(in);
    if (round)
        fprintf(stderr, "run: round %d: %s\n", round, stage);
    else
        fprintf(stderr, "run: %s\n", stage);
    return rc;
}

static int stage_end(Stage *s, int ok, const char *const *outputs, int n_outputs) {
    StageRow row = {0};
    row.round = s->round;
    snprintf(row.stage, sizeof row.stage, "%s", s->stage);
    snprintf(row.status, sizeof row.status, "%s", ok ? "done" : "failed");
    row.seconds = ld_time_s() - s->t0;
    row.requests = s->usage.requests_sent, row.cache_hits = s->usage.cache_hits;
    row.prompt_tokens = s->usage.prompt_tokens, row.completion_tokens = s->usage.completion_tokens;
    row.new_prompt_tokens = s->usage.new_prompt_tokens, row.new_completion_tokens = s->usage.new_completion_tokens;
    row.usd = s->usage.cost_usd, row.new_usd = s->usage.new_cost_usd;
    // what the used replies were worth, less the part paid now (unusable replies are paid but not used)
    row.reused_usd = fmax(s->usage.cost_usd - (s->usage.new_cost_usd - s->usage.unusable_cost_usd), 0);
    row.outputs = ok ? files_hash_json(outputs, n_outputs) : NULL;
    if (!ok) cJSON_AddStringToObject(s->detail, "error", ld_last_error());  // why, for status and the report
    cJSON *scrubbed = NULL;  // what privacy replaced before sending, by kind (counts only: never the finds)
    for (int k = 0; k < PII_KINDS; k++)
        if (s->usage.scrubbed[k]) {
            if (!scrubbed) scrubbed = cJSON_AddObjectToObject(s->detail, "scrubbed");
            cJSON_AddNumberToObject(scrubbed, k_pii_names[k], (double)s->usage.scrubbed[k]);
        }
    row.detail = cJSON_PrintUnformatted(s->detail);
    cJSON_Delete(s->detail);
    int rc = ledger_finish(s->r->ledger, &row);
    free(row.outputs), free(row.detail);
    return ok && !rc ? 0 : -1;
}

static int skip_done(Run *r, int round, const char *stage) {
    if (!ledger_is_done(r->ledger, round, stage)) return 0;
    if (round)
        fprintf(stderr, "run: round %d: %s already done\n", round, stage);
    else
        fprintf(stderr, "run: %s already done\n", stage);
    return 1;
}

static LlmCache *open_cache(Run *r);

// Dollars paid so far: every distinct request is paid once and kept in the cache with its cost, so the cache's
// total is the spend — replies reused from the cache and requests of a stage killed half-way included.
static double spent(Run *r) {
    LlmCache *c = open_cache(r);
    double usd = c ? cache_total_cost(c) : 0;
    cache_close(c);
    return usd;
}

// The client's budget for one stage: what is left of the run's and the service's own cap.
// A batch's id in the ledger as soon as it is submitted (and its end), beside the cache's own record: status and the
// report can name it, and a user can look it up at the provider.
static void note_batch(void *ctx, const char *batch_id, const char *state) {
    Run *r = ctx;
    char key[300];
    snprintf(key, sizeof key, "batch %s", batch_id);
    ledger_set(r->ledger, key, state);
}

static ClientLimits stage_limits(Run *r, const ClientLimits *base) {
    ClientLimits l = *base;
    l.on_batch = note_batch, l.on_batch_ctx = r;
    if (r->budget_usd > 0) {
        double left = r->budget_usd - spent(r);
        if (left < 0.000001) left = 0.000001;
        if (l.budget_usd <= 0 || left < l.budget_usd) l.budget_usd = left;
    }
    return l;
}

static LlmCache *open_cache(Run *r) {
    char *p = pathf(r, RUN_CACHE);
    LlmCache *c = cache_open(p);
    free(p);
    return c;
}

// ---- stages -------------------------------------------------------------------------------------------------

static int write_records(const char *path, Records *rec, const int *idx, int n) {
    cJSON **items = ld_xcalloc((size_t)n + 1, sizeof(cJSON *));
    for (int i = 0; i < n; i++) items[i] = rec->v[idx[i]].json;
    int rc = jsonl_write_atomic(path, items, n);
    free(items);
    return rc;
}

static int stage_split(Run *r) {
    if (skip_done(r, 0, "split")) return 0;
    char *tr = pathf(r, RUN_COVERAGE_TRAIN), *te = pathf(r, RUN_COVERAGE_TEST);
    const char *ins[] = {r->coverage, r->test ? r->test : r->coverage}, *outs[] = {tr, te};
    Stage s;
    stage_begin(&s, r, 0, "split", ins, 2);
    Records cov, tst = {0};
    int ok = records_read(r->coverage, 1, &cov) == 0;
    if (ok) {
        int n = cov.n, *idx = ld_xmalloc(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) idx[i] = i;
        if (r->test) {
            ok = records_read(r->test, 1, &tst) == 0 && write_records(tr, &cov, idx, n) == 0;
            int *all = ld_xmalloc(sizeof(int) * (size_t)(tst.n + 1));
            for (int i = 0; i < tst.n; i++) all[i] = i;
            ok = ok && write_records(te, &tst, all, tst.n) == 0;
            cJSON_AddNumberToObject(s.detail, "train", n), cJSON_AddNumberToObject(s.detail, "test", tst.n);
            free(all);
            records_free(&tst);
        } else {  // a seeded shuffle, the first share held out
            uint64_t st = 0x9e3779b97f4a7c15ull ^ (uint64_t)r->split_seed;
            for (int i = n - 1; i > 0; i--) {
                st ^= st << 13, st ^= st >> 7, st ^= st << 17;
                int j = (int)(st % (uint64_t)(i + 1)), t = idx[i];
                idx[i] = idx[j], idx[j] = t;
            }
            int nt = (int)lround(r->test_ratio * n);
            if (nt < 1) nt = 1;
            if (nt > n - 1) nt = n - 1;
            ok = write_records(te, &cov, idx, nt) == 0 && write_records(tr, &cov, idx + nt, n - nt) == 0;
            cJSON_AddNumberToObject(s.detail, "train", n - nt), cJSON_AddNumberToObject(s.detail, "test", nt);
        }
        free(idx);
        records_free(&cov);
    }
    int rc = stage_end(&s, ok, outs, 2);
    free(tr), free(te);
    return rc;
}

// Judges answers with every configured judge (several: per-judge files and the combination).
static int judge_answers(Run *r, Stage *s, LlmCache *cache, const Records *test, const char *answers, const char *judge_path,
                         const char *scores_path, const char *metrics_path, JudgeSummary *out) {
    for (int j = 0; j < r->st.n_judges && !r->warned_self_preference && r->st.judge.method != JUDGE_METRIC; j++)  // once per run
        if (judge_prefers_itself(&r->st.judge, &r->st.judges[j])) judge_warn_self_preference(&r->st.judges[j]);
    r->warned_self_preference = 1;
    JudgeSummary per[MAX_JUDGES] = {0};
    ClientLimits lim[MAX_JUDGES];
    for (int j = 0; j < r->st.n_judges; j++) lim[j] = stage_limits(r, &r->st.judge_limits[j]);
    int rc = judge_all(r->st.judges, lim, r->st.n_judges, cache, &r->st.judge, test, answers, judge_path, scores_path, metrics_path, per,
                       out, &s->usage);
    for (int j = 0; j < r->st.n_judges; j++) judge_summary_free(&per[j]);
    return rc;
}

// What the ledger keeps of a scoring: the judge's means (when asked), each measure and whether the rule held.
static void add_scores_detail(cJSON *d, const JudgeSummary *js) {
    if (js->similarity.n) {
        cJSON_AddNumberToObject(d, "similarity_mean", js->similarity.mean);
        cJSON_AddNumberToObject(d, "precision_mean", js->precision.mean);
    }
    for (int m = MEASURE_EXACT_MATCH; m < MEASURE_COUNT; m++)
        if (!isnan(js->measure[m])) cJSON_AddNumberToObject(d, k_measures[m].name, js->measure[m]);
    cJSON_AddBoolToObject(d, "pass", js->pass);
}

// "similarity 81.2, precision 84.0, exact_match 0.75, checker 0.80" (the measures that were computed).
static void scores_line(const JudgeSummary *js, char *buf, size_t cap) {
    int k = 0;
    buf[0] = 0;
    if (js->similarity.n) k = snprintf(buf, cap, "similarity %.1f, precision %.1f, ", js->similarity.mean, js->precision.mean);
    for (int m = MEASURE_EXACT_MATCH; m < MEASURE_COUNT && k < (int)cap; m++)
        if (!isnan(js->measure[m]) && m != MEASURE_ROUGE_L && m != MEASURE_CHRF)
            k += snprintf(buf + k, cap - (size_t)k, "%s %.2f, ", k_measures[m].name, js->measure[m]);
    if (k >= 2 && k < (int)cap) buf[k - 2] = 0;
}

typedef struct {
    cJSON **answers;
} CeilingCtx;

static void ceiling_done(void *ctx, LlmJob *job) {
    CeilingCtx *c = ctx;
    int i = (int)(intptr_t)job->user;
    cJSON_AddStringToObject(c->answers[i], "text", job->status == JOB_OK ? job->reply.text : "");
    if (job->status != JOB_OK) cJSON_AddStringToObject(c->answers[i], "error", job->error ? job->error : "not answered");
}

// The service LLM answers the test prompts itself, judged the same way: the ceiling the student aims at.
static int stage_ceiling(Run *r) {
    if (!r->ceiling || skip_done(r, 0, "ceiling")) return 0;
    char *te = pathf(r, RUN_COVERAGE_TEST), *ans = pathf(r, RUN_CEILING_ANSWERS);
    char *jp = pathf(r, RUN_CEILING_JUDGE), *mp = pathf(r, RUN_CEILING_METRICS), *sp = pathf(r, RUN_CEILING_SCORES);
    const char *ins[] = {te}, *outs[] = {ans, mp};
    int ok = ensure_service(r) == 0;
    Stage s;
    stage_begin(&s, r, 0, "ceiling", ins, 1);
    Records test = {0};
    LlmCache *cache = ok ? open_cache(r) : NULL;
    ok = ok && cache && records_read(te, 1, &test) == 0;
    if (ok) {
        LlmJob *jobs = ld_xcalloc((size_t)test.n, sizeof(LlmJob));
        LlmMessage **msgs = ld_xcalloc((size_t)test.n, sizeof(LlmMessage *));
        CeilingCtx c = {ld_xcalloc((size_t)test.n, sizeof(cJSON *))};
        for (int i = 0; i < test.n; i++) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(test.v[i].json, "messages");
            int n = cJSON_GetArraySize(m) - 1, k = 0;  // without the reference answer
            msgs[i] = ld_xcalloc((size_t)n + 1, sizeof(LlmMessage));
            for (const cJSON *x = m->child; x && k < n; x = x->next, k++)
                msgs[i][k] = (LlmMessage){cJSON_GetObjectItemCaseSensitive(x, "role")->valuestring,
                                          cJSON_GetObjectItemCaseSensitive(x, "content")->valuestring};
            jobs[i].req = (LlmRequest){.messages = msgs[i], .n_messages = n};
            jobs[i].user = (void *)(intptr_t)i;
            c.answers[i] = cJSON_CreateObject();
            cJSON_AddStringToObject(c.answers[i], "id", test.v[i].id);
            cJSON_AddNumberToObject(c.answers[i], "sample", 0);
        }
        ClientLimits lim = stage_limits(r, &r->st.limits);
        ClientStats st = {0};
        // the answers are written even when none came (each with its error); a service that answered none fails the stage
        ok = llm_run(&r->st.service, &lim, cache, jobs, test.n, ceiling_done, &c, &st) == 0 &&
             jsonl_write_atomic(ans, c.answers, test.n) == 0 && !stage_all_failed("ceiling", &r->st.service, &lim, &st, test.n);
        client_stats_add(&s.usage, &st);
        // what answering alone cost: the API's price of one request, for the break-even estimate
        cJSON_AddNumberToObject(s.detail, "answers", test.n);
        cJSON_AddNumberToObject(s.detail, "answer_usd", st.cost_usd);
        cJSON_AddNumberToObject(s.detail, "answer_prompt_tokens", (double)st.prompt_tokens);
        cJSON_AddNumberToObject(s.detail, "answer_completion_tokens", (double)st.completion_tokens);
        JudgeSummary js = {0};
        if (ok && judge_answers(r, &s, cache, &test, ans, jp, sp, mp, &js) == 0) {
            add_scores_detail(s.detail, &js);
            judge_summary_free(&js);
        } else {
            ok = 0;
        }
        for (int i = 0; i < test.n; i++) free(msgs[i]), cJSON_Delete(c.answers[i]), llm_job_clear(&jobs[i]);
        free(msgs), free(jobs), free(c.answers);
    }
    if (cache) cache_close(cache);
    records_free(&test);
    int rc = stage_end(&s, ok, outs, 2);
    free(te), free(ans), free(jp), free(mp), free(sp);
    return rc;
}

// The last probe's findings, one per seed (a seed's worst sample), or NULL when there was no probe.
static SynthTarget *probe_targets(const char *scores_path, const Records *seeds) {
    cJSON **items;
    int *lines, n;
    if (!ld_file_exists(scores_path) || jsonl_read(scores_path, &items, &lines, &n, 1)) return NULL;
    SynthTarget *t = ld_xcalloc((size_t)seeds->n + 1, sizeof(SynthTarget));
    for (int k = 0; k < n; k++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(items[k], "id"), *sc = cJSON_GetObjectItemCaseSensitive(items[k], "score");
        const cJSON *an = cJSON_GetObjectItemCaseSensitive(items[k], "answer"),
                    *cr = cJSON_GetObjectItemCaseSensitive(items[k], "critique");
        int failed = cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(items[k], "passed"));  // the rule, on this answer alone
        for (int i = 0; cJSON_IsString(id) && cJSON_IsNumber(sc) && i < seeds->n; i++) {
            if (strcmp(seeds->v[i].id, id->valuestring)) continue;
            failed |= t[i].failed;
            if (t[i].probed && t[i].score <= sc->valuedouble) {  // a better sample: the worst one's answer stays
                t[i].failed = failed;
                continue;
            }
            free((char *)t[i].answer), free((char *)t[i].critique);
            t[i] = (SynthTarget){1, failed, sc->valuedouble, ld_xstrdup(cJSON_IsString(an) ? an->valuestring : ""),
                                 ld_xstrdup(cJSON_IsString(cr) ? cr->valuestring : "")};
        }
    }
    for (int k = 0; k < n; k++) cJSON_Delete(items[k]);
    free(items), free(lines);
    return t;
}

static void probe_targets_free(SynthTarget *t, int n) {
    for (int i = 0; t && i < n; i++) free((char *)t[i].answer), free((char *)t[i].critique);
    free(t);
}

// Which probe item each targeted call aimed at, in call order (an item again each time the calls cycle back to it):
// what the report lists as targeted, with the probe's critique of it.
static void add_aims(cJSON *detail, const SynthConfig *cfg, const Records *seeds) {
    int *aim = ld_xmalloc(sizeof(int) * (size_t)(cfg->calls + 1));
    synth_aims(cfg, seeds->n, aim);
    cJSON *a = cJSON_AddArrayToObject(detail, "targeted_seeds");
    for (int c = 0; c < cfg->calls; c++)
        if (aim[c] >= 0) cJSON_AddItemToArray(a, cJSON_CreateString(seeds->v[aim[c]].id));
    free(aim);
}

static int synth_calls(const Run *r, int round) {  // growth up to 100 a round would pass int's range within a few rounds
    return (int)fmin(lround(r->st.synth.calls * pow(r->synth_growth, round - 2)), 1e6);
}

static int stage_synth(Run *r, int round) {
    if (skip_done(r, round, "synth")) return 0;
    char *tr = pathf(r, RUN_COVERAGE_TRAIN), *te = pathf(r, RUN_COVERAGE_TEST);
    char *out = pathf(r, RUN_SYNTH, round), *drop = pathf(r, RUN_DROPPED, round);
    char *probe = pathf(r, RUN_PROBE_SCORES, round - 1);
    int targeted = !strcmp(r->st.synth.strategy, "targeted") && ld_file_exists(probe);
    const char *ins[] = {tr, te, probe}, *outs[] = {out, drop};
    int ok = ensure_service(r) == 0;
    Stage s;
    stage_begin(&s, r, round, "synth", ins, targeted ? 3 : 2);
    Records seeds = {0}, test = {0}, *prior = ld_xcalloc((size_t)round, sizeof(Records));
    int n_prior = 0;
    LlmCache *cache = ok ? open_cache(r) : NULL;
    ok = ok && cache && records_read(tr, 1, &seeds) == 0 && records_read(te, 1, &test) == 0;
    SynthTarget *targets = ok && targeted ? probe_targets(probe, &seeds) : NULL;
    if (!strcmp(r->st.synth.strategy, "targeted") && !targets && ok)
        fprintf(stderr, "run: round %d: synth: no probe of round %d (%s): seeds drawn uniformly\n", round, round - 1, probe);
    for (int t = 2; t < round && ok; t++) {  // earlier rounds' data: nothing new may repeat it
        char *p = pathf(r, RUN_SYNTH, t);
        ok = records_read(p, 0, &prior[n_prior]) == 0;
        if (ok) n_prior++;
        free(p);
    }
    if (ok) {
        SynthConfig cfg = r->st.synth;
        cfg.round = round, cfg.calls = synth_calls(r, round), cfg.targets = targets;
        ClientLimits lim = stage_limits(r, &r->st.limits);
        SynthSummary sum = {0};
        // a service that answered no call at all fails the stage (a round without new data would go on silently)
        ok = synth_run(&r->st.service, &lim, cache, &cfg, &seeds, prior, n_prior, &test, out, drop, &sum) == 0 &&
             !(sum.calls_ok == 0 && stage_all_failed("synth", &r->st.service, &lim, &sum.client, cfg.calls));
        client_stats_add(&s.usage, &sum.client);  // what was sent is recorded, whether the stage failed or not
        if (ok) {
            cJSON_AddNumberToObject(s.detail, "calls", cfg.calls);
            cJSON_AddNumberToObject(s.detail, "calls_failed", sum.calls_failed);
            cJSON_AddNumberToObject(s.detail, "returned", sum.returned);
            cJSON_AddNumberToObject(s.detail, "kept", sum.kept);
            cJSON_AddNumberToObject(s.detail, "invalid", sum.invalid);
            cJSON_AddNumberToObject(s.detail, "exact_duplicates", sum.exact_dup);
            cJSON_AddNumberToObject(s.detail, "near_duplicates", sum.near_dup);
            cJSON_AddNumberToObject(s.detail, "contaminated", sum.contaminated);
            cJSON_AddNumberToObject(s.detail, "failed_check", sum.failed_check);
            cJSON_AddStringToObject(s.detail, "strategy", targets ? "targeted" : "uniform");
            cJSON_AddNumberToObject(s.detail, "targeted_calls", sum.targeted_calls);
            add_aims(s.detail, &cfg, &seeds);
            fprintf(stderr, "run: round %d: synth: %d calls (%d targeted at the round %d probe's answers), %d pairs kept of %d returned",
                    round, cfg.calls, sum.targeted_calls, round - 1, sum.kept, sum.returned);
            if (task_check_verifies(&r->st.check)) fprintf(stderr, ", %d failed the task's checker", sum.failed_check);
            fprintf(stderr, "\n");
        }
    }
    if (cache) cache_close(cache);
    records_free(&test);
    for (int i = 0; i < n_prior; i++) records_free(&prior[i]);
    probe_targets_free(targets, seeds.n);
    records_free(&seeds);
    free(prior);
    int rc = stage_end(&s, ok, outs, 2);
    free(tr), free(te), free(out), free(drop), free(probe);
    return rc;
}

// Appends the records of a JSONL file to f; returns how many (-1 on error).
static int append_file(FILE *f, const char *path) {
    Records rec;
    if (records_read(path, 0, &rec)) return -1;
    for (int i = 0; i < rec.n; i++) {
        char *t = cJSON_PrintUnformatted(rec.v[i].json);
        fprintf(f, "%s\n", t);
        free(t);
    }
    int n = rec.n;
    records_free(&rec);
    return n;
}

// A Slurm job for (round, stage) that a rerun can find again: the one the ledger names, or one queued or running
// under the stage's job name (an orchestrator killed between sbatch and the ledger's write). 2: it completed and
// its outputs are there (its results stand), 1: it is still queued or running (*job names it), 0: none to take
// (a job that failed, or completed with its outputs gone since, is not taken: this rerun submits anew), -1 on an
// error.
static int slurm_job_to_attach(Run *r, const char *key, const char *name, const char *const *outs, int n_outs, SlurmJob *job) {
    char *known = ledger_get(r->ledger, key), state[64] = "";
    if (known) {
        snprintf(job->id, sizeof job->id, "%s", known);
        free(known);
        if (slurm_state(job->id, state, sizeof state)) return -1;
        int all_there = 1;
        for (int i = 0; i < n_outs; i++) all_there &= ld_file_exists(outs[i]);
        if (!strcmp(state, "COMPLETED") && all_there) return 2;
        if (slurm_state_active(state)) return 1;
    }
    return slurm_find_active(name, job);
}

// The student's stage command (a `llamaduo` argv) making outs: a child process here, or a Slurm job with `ranks`
// ranks per node (student.launcher: slurm) whose id goes into the ledger, so that a rerun after the orchestrator
// was killed waits for the job still queued or running, or takes the results of one that completed, and submits
// nothing twice. resume_if: a checkpoint a requeued job resumes from.
typedef struct {
    const char *const *outs;
    int n_outs;
    const char *resume_if;
} StageFiles;

static int student_stage(Run *r, Argv *a, int round, const char *stage, int ranks, const StageFiles *files, const char *what) {
    if (strcmp(r->launcher, "slurm") || a->overflow) return spawn_argv(r, a, what);
    char name[512], key[64], label[96];
    slurm_job_name(r->dir, round, stage, name, sizeof name);
    snprintf(key, sizeof key, "slurm_job.r%d.%s", round, stage);
    snprintf(label, sizeof label, "round %d: %s", round, stage);
    char *dir = pathf(r, RUN_ROUND, round), *script = ld_path_join(dir, stage), *exe = realpath(r->self_exe, NULL), log[1024];
    snprintf(log, sizeof log, "%s/%s-%%j.log", dir, stage);
    char *sbatch = ld_xmalloc(strlen(script) + 8);
    sprintf(sbatch, "%s.sbatch", script);
    SlurmJob job = {0};
    int found = ld_mkdir_p(dir) ? -1 : slurm_job_to_attach(r, key, name, files->outs, files->n_outs, &job), rc = -1;
    if (found == 2) {
        fprintf(stderr, "run: %s: Slurm job %s completed: its results are taken\n", label, job.id);
        rc = 0;
    } else if (found == 1) {
        fprintf(stderr, "run: %s: attaching to Slurm job %s, queued or running since an earlier run\n", label, job.id);
    } else if (found == 0) {
        a->v[0] = exe ? exe : (char *)r->self_exe;  // the job may start elsewhere: this binary by its full path
        if (slurm_submit(&r->slurm, name, sbatch, log, ranks, a->v, files->resume_if, &job) == 0) {
            fprintf(stderr, "run: %s: submitted Slurm job %s (%s)\n", label, job.id, sbatch);
            found = 1;
        }
    }
    if (found == 1 && ledger_set(r->ledger, key, job.id) == 0) {
        slurm_log_path(log, job.id, job.log, sizeof job.log);
        rc = slurm_wait(&job, r->slurm.poll_s, label);
    }
    free(dir), free(script), free(exe), free(sbatch);
    return rc;
}

// Ranks per node of a Slurm job (training, and answering the prompts): slurm.tasks, or one per GPU.
static int slurm_train_ranks(const Run *r) { return r->slurm.tasks ? r->slurm.tasks : r->slurm.gpus > 0 ? r->slurm.gpus : 1; }

static int stage_train(Run *r, int round) {
    if (skip_done(r, round, "train")) return 0;
    char *dir = pathf(r, RUN_ROUND, round), *data = pathf(r, RUN_TRAIN_DATA, round);
    char *yaml = pathf(r, RUN_TRAIN_CONFIG, round), *ck = pathf(r, RUN_CHECKPOINT, round);
    char *a_st = pathf(r, RUN_ADAPTER_WEIGHTS, round), *a_cf = pathf(r, RUN_ADAPTER_CONFIG, round);
    char *prev = pathf(r, RUN_ADAPTER, round - 1), *cov = pathf(r, RUN_COVERAGE_TRAIN);
    const char **ins = ld_xcalloc((size_t)round + 2, sizeof(char *)), *outs[] = {a_st, a_cf};
    char **synth = ld_xcalloc((size_t)round + 1, sizeof(char *));
    int n_in = 0;
    ins[n_in++] = cov;
    for (int t = 2; t <= round; t++) ins[n_in++] = synth[t] = pathf(r, RUN_SYNTH, t);
    Stage s;
    stage_begin(&s, r, round, "train", ins, n_in);
    int ok = ld_mkdir_p(dir) == 0, n_records = 0;
    char *tmp;
    FILE *f = ok ? ld_atomic_open(data, &tmp) : NULL;  // all the data so far: coverage seeds + every synthetic round
    if (f) {
        for (int i = 0; i < n_in && ok; i++) {
            int n = append_file(f, ins[i]);
            ok = n >= 0;
            n_records += n > 0 ? n : 0;
        }
        ok = ld_atomic_commit(f, tmp, data, ok) == 0 && ok;
    } else {
        ok = 0;
    }
    if (ok) {
        cJSON *t = r->train ? cJSON_Duplicate(r->train, 1) : cJSON_CreateObject(), *root = cJSON_CreateObject();
        cJSON_DeleteItemFromObject(t, "model"), cJSON_DeleteItemFromObject(t, "train"), cJSON_DeleteItemFromObject(t, "out");
        cJSON_AddStringToObject(t, "model", r->student);
        cJSON_AddStringToObject(t, "train", data);
        cJSON_AddStringToObject(t, "out", dir);
        if (r->threads && !cJSON_GetObjectItemCaseSensitive(t, "threads")) cJSON_AddNumberToObject(t, "threads", r->threads);
        cJSON_AddItemToObject(root, "train", t);
        char *txt = cJSON_Print(root);  // JSON is YAML
        cJSON_Delete(root);
        FILE *y = ld_atomic_open(yaml, &tmp);
        ok = y && ld_atomic_commit(y, tmp, yaml, fputs(txt, y) >= 0) == 0;
        free(txt);
    }
    if (ok) {
        Argv a = {0};
        argv_add(&a, "llamaduo", "train", "--config", yaml, NULL);
        if (ld_file_exists(ck)) argv_add(&a, "--resume", NULL);  // a kill -9 left a checkpoint: continue from it
        if (r->retrain_continue && round > 1) argv_add(&a, "--init-adapter", prev, NULL);
        StageFiles files = {outs, 2, ck};
        ok = student_stage(r, &a, round, "train", slurm_train_ranks(r), &files, "llamaduo train") == 0;
    }
    cJSON_AddNumberToObject(s.detail, "records", n_records);
    int rc = stage_end(&s, ok, outs, 2);
    for (int t = 2; t <= round; t++) free(synth[t]);
    free(synth), free(ins), free(dir), free(data), free(yaml), free(ck), free(a_st), free(a_cf), free(prev), free(cov);
    return rc;
}

// The student answers input (chat records) with round's adapter: `llamaduo generate`, K samples each.
static int student_answers(Run *r, int round, const char *stage, const char *input, const char *output, int samples) {
    char *adapter = pathf(r, RUN_ADAPTER, round);
    char k[16], mt[16], temp[32], seed[16], batch[16], threads[16];
    snprintf(k, sizeof k, "%d", samples);
    snprintf(mt, sizeof mt, "%d", r->infer_max_tokens);
    snprintf(temp, sizeof temp, "%g", r->infer_temperature);
    snprintf(seed, sizeof seed, "%d", r->infer_seed);
    snprintf(batch, sizeof batch, "%d", r->infer_batch);
    snprintf(threads, sizeof threads, "%d", r->threads);
    Argv a = {0};
    argv_add(&a, "llamaduo", "generate", "--model", (char *)r->student, "--adapter", adapter, "--input", input, "--samples", k, "--output",
             output, "--max-tokens", mt, "--temperature", temp, "--seed", seed, "--batch", batch, "--precision", (char *)r->infer_precision,
             NULL);
    if (r->threads) argv_add(&a, "--threads", threads, NULL);
    const char *outs[] = {output};
    StageFiles files = {outs, 1, NULL};
    int rc = student_stage(r, &a, round, stage, slurm_train_ranks(r), &files, "llamaduo generate");
    free(adapter);
    return rc;
}

static int stage_infer(Run *r, int round) {
    if (skip_done(r, round, "infer")) return 0;
    char *te = pathf(r, RUN_COVERAGE_TEST), *a_st = pathf(r, RUN_ADAPTER_WEIGHTS, round), *out = pathf(r, RUN_INFER, round);
    const char *ins[] = {te, a_st}, *outs[] = {out};
    Stage s;
    stage_begin(&s, r, round, "infer", ins, 2);
    int ok = student_answers(r, round, "infer", te, out, r->samples) == 0;
    int rc = stage_end(&s, ok, outs, 1);
    free(te), free(a_st), free(out);
    return rc;
}

static int stage_judge(Run *r, int round) {
    if (skip_done(r, round, "judge")) return 0;
    char *te = pathf(r, RUN_COVERAGE_TEST), *ans = pathf(r, RUN_INFER, round);
    char *jp = pathf(r, RUN_JUDGE, round), *mp = pathf(r, RUN_METRICS, round), *sp = pathf(r, RUN_SCORES, round);
    const char *ins[] = {te, ans}, *outs[] = {mp, sp};
    int ok = r->st.judge.method == JUDGE_METRIC || ensure_service(r) == 0;  // metrics alone need no service
    Stage s;
    stage_begin(&s, r, round, "judge", ins, 2);
    Records test = {0};
    LlmCache *cache = ok ? open_cache(r) : NULL;
    ok = ok && cache && records_read(te, 1, &test) == 0;
    JudgeSummary js = {0};
    if (ok && judge_answers(r, &s, cache, &test, ans, jp, sp, mp, &js) == 0) {
        add_scores_detail(s.detail, &js);
        char line[512], *rule = pass_rule_describe(&r->st.rule);
        scores_line(&js, line, sizeof line);
        fprintf(stderr, "run: round %d: %s; pass rule (%s): %s\n", round, line, rule, js.pass ? "held" : "not met");
        free(rule);
        judge_summary_free(&js);
    } else {
        ok = 0;
    }
    if (cache) cache_close(cache);
    records_free(&test);
    int rc = stage_end(&s, ok, outs, 2);
    free(te), free(ans), free(jp), free(mp), free(sp);
    return rc;
}

// A seeded draw of up to n of the training seeds, in file order: the probe of one round (never the test split).
static int draw_probe(Run *r, int round, const Records *seeds, const char *path) {
    int n = seeds->n < r->probe ? seeds->n : r->probe, *idx = ld_xmalloc(sizeof(int) * (size_t)(seeds->n + 1));
    for (int i = 0; i < seeds->n; i++) idx[i] = i;
    uint64_t st = 0x2545f4914f6cdd1dull ^ ((uint64_t)r->split_seed << 20) ^ (uint64_t)round;
    for (int i = 0; i < n; i++) {  // a partial Fisher-Yates: the first n places
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        int j = i + (int)(st % (uint64_t)(seeds->n - i)), t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
    int rc = write_records(path, (Records *)seeds, idx, n);
    free(idx);
    return rc;
}

// After a round that did not pass, the student answers a probe of its own training records, scored like the test
// set: what the next round's targeted synthesis aims at, and the probe values the report shows beside the test's.
static int stage_probe(Run *r, int round) {
    if (skip_done(r, round, "probe")) return 0;
    char *tr = pathf(r, RUN_COVERAGE_TRAIN), *a_st = pathf(r, RUN_ADAPTER_WEIGHTS, round), *probe = pathf(r, RUN_PROBE, round);
    char *ans = pathf(r, RUN_PROBE_ANSWERS, round), *jp = pathf(r, RUN_PROBE_JUDGE, round);
    char *sp = pathf(r, RUN_PROBE_SCORES, round), *mp = pathf(r, RUN_PROBE_METRICS, round);
    const char *ins[] = {tr, a_st}, *outs[] = {sp, mp};
    int ok = r->st.judge.method == JUDGE_METRIC || ensure_service(r) == 0;
    Stage s;
    stage_begin(&s, r, round, "probe", ins, 2);
    Records seeds = {0}, items = {0};
    ok = ok && records_read(tr, 1, &seeds) == 0 && draw_probe(r, round, &seeds, probe) == 0 && records_read(probe, 1, &items) == 0 &&
         student_answers(r, round, "probe", probe, ans, 1) == 0;
    LlmCache *cache = ok ? open_cache(r) : NULL;
    JudgeSummary js = {0};
    if (ok && cache && judge_answers(r, &s, cache, &items, ans, jp, sp, mp, &js) == 0) {
        add_scores_detail(s.detail, &js);
        cJSON_AddNumberToObject(s.detail, "items", items.n);
        char line[512];
        scores_line(&js, line, sizeof line);
        fprintf(stderr, "run: round %d: probe of %d training records: %s\n", round, items.n, line);
        judge_summary_free(&js);
    } else {
        ok = 0;
    }
    if (cache) cache_close(cache);
    records_free(&seeds), records_free(&items);
    int rc = stage_end(&s, ok, outs, 2);
    free(tr), free(a_st), free(probe), free(ans), free(jp), free(sp), free(mp);
    return rc;
}

static double stat_of(const cJSON *m, const char *which, const char *field) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, which), field);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

// The stop rules after a round's judging; NULL to go on. Writes the reason to the ledger.
static const char *decide(Run *r, int round, char *why, size_t cap, int *passed) {
    double best = -1;
    int best_round = 0;
    *passed = 0;
    for (int t = 1; t <= round; t++) {
        char *mp = pathf(r, RUN_METRICS, t);
        cJSON *m = json_read_file(mp);
        free(mp);
        double score = pass_rule_score(&r->st.rule, m);
        int pass = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "pass"));
        cJSON_Delete(m);
        if (t == round && pass) {
            *passed = 1;
            char *rule = pass_rule_describe(&r->st.rule);
            snprintf(why, cap, "the pass rule held in round %d (%s)", round, rule);
            free(rule);
            return why;
        }
        if (!isnan(score) && score > best + r->min_improvement) best = score, best_round = t;
    }
    if (round >= r->max_rounds)
        snprintf(why, cap, "the maximum of %d rounds was reached", r->max_rounds);
    else if (r->budget_usd > 0 && spent(r) >= r->budget_usd)
        snprintf(why, cap, "the budget of $%g is spent", r->budget_usd);
    else if (round - best_round >= r->patience)
        snprintf(why, cap, "no improvement of more than %g points for %d rounds (best: round %d)", r->min_improvement, r->patience,
                 best_round);
    else
        return NULL;
    return why;
}

static int stage_report(Run *r) {
    char *html = pathf(r, RUN_REPORT_HTML), *md = pathf(r, RUN_REPORT_MD);
    int rc = report_write(r, html, md);
    if (!rc) fprintf(stderr, "run: report -> %s, %s\n", html, md);
    free(html), free(md);
    return rc;
}

int run_stage(Run *r, const char *stage, int round) {
    // a stage that asks the service needs its keys: said before any work, not after a ledger row is begun
    if ((!strcmp(stage, "ceiling") || !strcmp(stage, "synth") || !strcmp(stage, "judge") || !strcmp(stage, "probe")) && keys_set(r))
        return -1;
    if (!strcmp(stage, "split")) return stage_split(r);
    if (!strcmp(stage, "ceiling")) return stage_ceiling(r);
    if (!strcmp(stage, "report")) return stage_report(r);
    if (round < 1 || (round < 2 && !strcmp(stage, "synth"))) {
        ld_set_error("%s needs --round N (%s)", stage, !strcmp(stage, "synth") ? "from 2: round 1 trains on the seeds alone" : "from 1");
        return -1;
    }
    if (!strcmp(stage, "synth")) return stage_synth(r, round);
    if (!strcmp(stage, "train")) return stage_train(r, round);
    if (!strcmp(stage, "infer")) return stage_infer(r, round);
    if (!strcmp(stage, "judge")) return stage_judge(r, round);
    if (!strcmp(stage, "probe")) return stage_probe(r, round);
    ld_set_error("unknown stage '%s' (split, ceiling, synth, train, infer, judge, probe, report)", stage);
    return -1;
}

int run_loop(Run *r) {
    char *stopped = ledger_get(r->ledger, "stop_reason");
    if (stopped) {
        fprintf(stderr, "run: %s already finished: %s\n", r->dir, stopped);
        free(stopped);
        return stage_report(r);
    }
    char *exe_model = ld_xstrdup(r->student);
    ledger_set(r->ledger, "student_model", exe_model);
    ledger_set(r->ledger, "service_model", r->st.service.model);
    free(exe_model);
    if (stage_split(r) || stage_ceiling(r)) goto fail;
    char why[256];
    const char *reason = NULL;
    int round = 1, passed;
    for (; round <= r->max_rounds && !reason; round++) {
        if (round >= 2 && r->budget_usd > 0 && spent(r) >= r->budget_usd) {
            snprintf(why, sizeof why, "the budget of $%g is spent", r->budget_usd);
            reason = why;
            break;
        }
        if ((round >= 2 && stage_synth(r, round)) || stage_train(r, round) || stage_infer(r, round) || stage_judge(r, round)) goto fail;
        reason = decide(r, round, why, sizeof why, &passed);
        // what the student gets wrong on its own training data aims the next round's targeted synthesis, and the report
        // shows it beside the test set's, whatever the strategy; a round after which the loop stops (passed, patience,
        // the last round) leaves nothing to aim at, and a spent budget nothing to pay a probe's judge with
        int goes_on = !reason && !passed && round < r->max_rounds;
        if (r->probe > 0 && goes_on && !(r->budget_usd > 0 && spent(r) >= r->budget_usd) && stage_probe(r, round)) goto fail;
    }
    char rounds[16];
    snprintf(rounds, sizeof rounds, "%d", reason ? round - 1 : r->max_rounds);
    ledger_set(r->ledger, "rounds", rounds);
    ledger_set(r->ledger, "stop_reason", reason ? reason : "the maximum of rounds was reached");
    fprintf(stderr, "run: stopped after round %s: %s\n", rounds, reason ? reason : "maximum rounds");
    stop_service(r);
    return stage_report(r);
fail:
    stop_service(r);
    return -1;
}

// What a stage's replies were worth beyond what its last run paid: the replies reused from the cache.
static long reused_tokens(const StageRow *w) {
    return w->prompt_tokens + w->completion_tokens - w->new_prompt_tokens - w->new_completion_tokens;
}

int run_status(Run *r) {
    StageRow *rows;
    int n;
    if (ledger_rows(r->ledger, &rows, &n)) return -1;
    printf("run %s (config %s)\n", r->dir, r->config_path);
    printf("%-6s %-8s %-8s %9s %9s %9s %11s %11s %10s %10s\n", "round", "stage", "status", "seconds", "req paid", "req cached", "tok paid",
           "tok cached", "$ paid", "$ cached");
    double usd = 0, secs = 0;
    for (int i = 0; i < n; i++) {
        const StageRow *w = &rows[i];
        printf("%-6d %-8s %-8s %9.1f %9ld %9ld %11ld %11ld %10.4f %10.4f\n", w->round, w->stage, w->status, w->seconds, w->requests,
               w->cache_hits, w->new_prompt_tokens + w->new_completion_tokens, reused_tokens(w), w->new_usd, w->reused_usd);
        usd += w->usd, secs += w->seconds;
    }
    printf("(paid: sent to the service when the stage last ran; cached: replies reused from the response cache, paid once before)\n");
    for (int i = 0; i < n; i++) {
        cJSON *d = strcmp(rows[i].status, "failed") ? NULL : cJSON_Parse(rows[i].detail);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(d, "error");
        if (cJSON_IsString(e)) printf("round %d: %s failed: %s\n", rows[i].round, rows[i].stage, e->valuestring);
        cJSON_Delete(d);
    }
    for (int t = 1; t <= r->max_rounds; t++) {
        char *mp = pathf(r, RUN_METRICS, t);
        cJSON *m = json_read_file(mp);
        free(mp);
        if (!m) continue;
        char line[512] = "";
        int k = 0;
        if (!isnan(stat_of(m, "similarity", "mean")))
            k = snprintf(line, sizeof line, "similarity %.1f, precision %.1f, ", stat_of(m, "similarity", "mean"),
                         stat_of(m, "precision", "mean"));
        for (int q = MEASURE_EXACT_MATCH; q < MEASURE_COUNT && k < (int)sizeof line; q++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k_measures[q].name);
            if (cJSON_IsNumber(v) && q != MEASURE_ROUGE_L && q != MEASURE_CHRF)
                k += snprintf(line + k, sizeof line - (size_t)k, "%s %.2f, ", k_measures[q].name, v->valuedouble);
        }
        printf("round %d: %spass %s\n", t, line, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "pass")) ? "yes" : "no");
        cJSON_Delete(m);
    }
    char *reason = ledger_get(r->ledger, "stop_reason");
    printf("%s; %.0f s of stages; service replies worth $%.4f used, $%.4f paid\n",
           reason ? reason : "not finished (llamaduo run resumes it)", secs, usd, spent(r));
    free(reason);
    ledger_rows_free(rows, n);
    return 0;
}
