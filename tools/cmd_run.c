// llamaduo run / status / infer / report, and `--run DIR` for synth, train and judge: the closed loop over a run
// directory (host/run.c) and each of its stages on its own.
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "run.h"
#include "util.h"

static char g_self[PATH_MAX];

static const char *self_exe(void) {
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n <= 0) die("cannot find this program's path (/proc/self/exe)");
    g_self[n] = 0;
    return g_self;
}

static const char *k_run_help =
    "usage: llamaduo run CONFIG.yaml [--dir DIR] [--check]      (or: llamaduo run RUN_DIR)\n\n"
    "The closed migration loop: split the coverage data, measure the service LLM's own answers (the ceiling), then per\n"
    "round synthesise data (from round 2), fine-tune the student, answer the test prompts and judge them, until the\n"
    "pass rule holds, run.max_rounds or run.budget_usd is reached, or scores stop improving (run.patience). Everything\n"
    "lands in the run directory (run.dir, default runs/<config name>): ledger.sqlite, cache.sqlite, data/, rounds/NN/,\n"
    "report.html and report.md. Rerunning on the same directory resumes: finished stages are skipped and no service\n"
    "request is paid twice. configs/template.yaml documents every key; the whole config is checked before any work.\n"
    "--check reads and checks the config only (its paths, student.train, every API key variable it names, and the run\n"
    "directory, --dir's if given); nothing is written or sent. Each stage alone: llamaduo synth|train|infer|judge --run DIR --round N; "
    "llamaduo report DIR; llamaduo status DIR.\n";

static void open_run(const char *arg, const char *dir, Run *r) {
    int rc = ld_is_dir(arg) ? run_from_dir(arg, self_exe(), r) : (run_load(arg, self_exe(), r) || run_open(r, dir));
    if (rc) die("%s", ld_last_error());
}

// The loop's own: the keys are checked too, and before the directory is created.
static void open_loop(const char *arg, const char *dir, Run *r) {
    int rc = ld_is_dir(arg) ? run_from_dir(arg, self_exe(), r) || run_check(r, NULL)
                            : run_load(arg, self_exe(), r) || run_check(r, dir) || run_open(r, NULL);
    if (rc) die("%s", ld_last_error());
}

int cmd_run(int argc, char **argv) {
    Args a = {argc, argv, 1, "run"};
    const char *target = NULL, *dir = NULL;
    int check = 0;
    while (a.i < argc) {
        if (arg_flag(&a, "--check")) {
            check = 1;
            continue;
        }
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("%s", k_run_help);
            return 0;
        }
        if (arg_value(&a, "--dir", &dir)) continue;
        if (argv[a.i][0] != '-' && !target) {
            target = argv[a.i++];
            continue;
        }
        arg_unknown(&a);
    }
    if (!target) die("run needs a config file or a run directory (see llamaduo run --help)");
    Run r;
    if (check) {  // the whole config, as the run would read it; nothing written, nothing sent
        if (run_load(target, self_exe(), &r) || run_check(&r, dir)) die("%s", ld_last_error());
        printf("%s: ok (run directory %s, %d rounds at most)\n", target, r.dir, r.max_rounds);
        run_close(&r);
        return 0;
    }
    open_loop(target, dir, &r);
    int rc = run_loop(&r);
    if (rc) fprintf(stderr, "llamaduo run: %s\nllamaduo run: rerun the same command to resume where it stopped\n", ld_last_error());
    run_close(&r);
    return rc ? 1 : 0;
}

int cmd_status(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        printf(
            "usage: llamaduo status RUN_DIR\n\nWhere a run stands: every stage with its status, time, requests, tokens and dollars,\n"
            "the scores of each judged round, and why the run stopped.\n");
        return argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
    }
    Run r;
    open_run(argv[1], NULL, &r);
    int rc = run_status(&r);
    run_close(&r);
    return rc ? 1 : 0;
}

int cmd_report(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        printf("usage: llamaduo report RUN_DIR\n\nWrites RUN_DIR/report.html (self-contained: inline SVG charts) and RUN_DIR/report.md.\n");
        return argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
    }
    Run r;
    open_run(argv[1], NULL, &r);
    int rc = run_stage(&r, "report", 0);
    if (rc) fprintf(stderr, "llamaduo report: %s\n", ld_last_error());
    run_close(&r);
    return rc ? 1 : 0;
}

int run_stage_command(int argc, char **argv, const char *stage) {
    Args a = {argc, argv, 1, stage};
    const char *dir = NULL;
    int round = 0;
    while (a.i < argc) {
        if (arg_value(&a, "--run", &dir) || arg_int(&a, "--round", &round, 0, 9999)) continue;
        arg_unknown(&a);
    }
    if (!dir) die("%s --run DIR needs the run directory", stage);
    Run r;
    open_run(dir, NULL, &r);
    int rc = run_stage(&r, stage, round);
    if (rc) fprintf(stderr, "llamaduo %s: %s\n", stage, ld_last_error());
    run_close(&r);
    return rc ? 1 : 0;
}

int cmd_infer(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf(
            "usage: llamaduo infer --run DIR --round N\n\nThe round's adapter answers the run's test prompts (student.infer settings,\n"
            "run.samples answers each) -> DIR/rounds/NN/infer.jsonl. For other inputs use llamaduo generate.\n");
        return argc < 2 ? 2 : 0;
    }
    return run_stage_command(argc, argv, "infer");
}

int cmd_probe(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf(
            "usage: llamaduo probe --run DIR --round N\n\nThe round's adapter answers a probe of run.probe training records (never the\n"
            "test split), scored like the test set -> DIR/rounds/NN/probe.scores.jsonl and probe.metrics.json: what the\n"
            "next round's targeted synthesis (synth.strategy: targeted) aims at.\n");
        return argc < 2 ? 2 : 0;
    }
    return run_stage_command(argc, argv, "probe");
}

int has_run_flag(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--run") || !strncmp(argv[i], "--run=", 6)) return 1;
    return 0;
}
