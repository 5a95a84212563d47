// llamaduo synth / judge: the service-LLM stages on their own, driven by a YAML config.
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "run_paths.h"
#include "stage_config.h"
#include "util.h"

typedef struct {
    cJSON *root;
    StageConfig s;
} Loaded;

static void load_stage_config(const char *path, Loaded *c) {
    c->root = config_load(path);
    if (!c->root || stage_config_parse(c->root, path, NULL, 0, &c->s)) die("%s", ld_last_error());
}

static LlmCache *open_cache(const char *dir, const char *path) {
    char *p = path ? ld_xstrdup(path) : ld_path_join(dir, RUN_CACHE);
    LlmCache *c = cache_open(p);
    if (!c) die("%s", ld_last_error());
    free(p);
    return c;
}

int cmd_synth(int argc, char **argv) {
    if (has_run_flag(argc, argv)) return run_stage_command(argc, argv, "synth");
    Args a = {argc, argv, 1, "synth"};
    const char *config = NULL, *train = NULL, *test = NULL, *out_dir = NULL, *cache_path = NULL;
    const char *prior[64];
    int n_prior = 0, round = 1, no_cache = 0;
    while (a.i < argc) {
        const char *v;
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf(
                "usage: llamaduo synth --config C.yaml --train SEEDS.jsonl --test TEST.jsonl --out-dir DIR [options]\n\n"
                "Asks the service LLM (config: service) for new pairs like the seeds (config: task, synth), validates,\n"
                "deduplicates against the seeds, every --prior file and themselves, decontaminates against the test\n"
                "split, and writes DIR/round-NN.synth.jsonl and DIR/round-NN.dropped.jsonl (each drop with its reason).\n"
                "  --prior FILE.jsonl   earlier data to deduplicate against (repeatable)\n"
                "  --round N            round number (default 1): part of every request and record id\n"
                "  --cache PATH         response cache (default DIR/cache.sqlite); a rerun never pays twice\n"
                "  --no-cache           do not read the cache (replies are still stored)\n");
            return 0;
        }
        if (arg_value(&a, "--config", &config) || arg_value(&a, "--train", &train) || arg_value(&a, "--test", &test) ||
            arg_value(&a, "--out-dir", &out_dir) || arg_value(&a, "--cache", &cache_path) || arg_int(&a, "--round", &round, 1, 9999))
            continue;
        if (arg_value(&a, "--prior", &v)) {
            if (n_prior == 64) die("at most 64 --prior files");
            prior[n_prior++] = v;
            continue;
        }
        if (arg_flag(&a, "--no-cache")) {
            no_cache = 1;
            continue;
        }
        arg_unknown(&a);
    }
    if (!config || !train || !test || !out_dir) die("synth needs --config, --train, --test and --out-dir (see --help)");
    Loaded L;
    load_stage_config(config, &L);
    StageConfig c = L.s;
    c.synth.round = round;
    if (no_cache) c.limits.use_cache = 0;
    Records seeds, tst, *pr = ld_xcalloc((size_t)n_prior + 1, sizeof(Records));
    if (records_read(train, 1, &seeds) || records_read(test, 1, &tst)) die("%s", ld_last_error());
    for (int i = 0; i < n_prior; i++)
        if (records_read(prior[i], 1, &pr[i])) die("%s", ld_last_error());
    if (ld_mkdir_p(out_dir)) die("%s", ld_last_error());
    LlmCache *cache = open_cache(out_dir, cache_path);
    char name[64];
    snprintf(name, sizeof name, RUN_SYNTH_NAME, round);
    char *out = ld_path_join(out_dir, name);
    snprintf(name, sizeof name, RUN_DROPPED_NAME, round);
    char *drop = ld_path_join(out_dir, name);
    SynthSummary s = {0};
    if (synth_run(&c.service, &c.limits, cache, &c.synth, &seeds, pr, n_prior, &tst, out, drop, &s)) die("%s", ld_last_error());
    printf(
        "synth: round %d: %d calls (%d ok, %d failed), %d pairs returned: %d kept, %d invalid, %d duplicates, "
        "%d near-duplicates, %d contaminated; paid now: %ld requests, %ld+%ld tokens, $%.4f; reused from the cache: %ld "
        "replies, %ld+%ld tokens, $%.4f -> %s\n",
        round, c.synth.calls, s.calls_ok, s.calls_failed, s.returned, s.kept, s.invalid, s.exact_dup, s.near_dup, s.contaminated,
        s.client.requests_sent, s.client.new_prompt_tokens, s.client.new_completion_tokens, s.client.new_cost_usd, s.client.cache_hits,
        s.client.prompt_tokens - s.client.new_prompt_tokens, s.client.completion_tokens - s.client.new_completion_tokens,
        s.client.cost_usd - s.client.new_cost_usd, out);
    cache_close(cache);
    records_free(&seeds), records_free(&tst);
    for (int i = 0; i < n_prior; i++) records_free(&pr[i]);
    free(pr), free(out), free(drop);
    stage_config_free(&L.s);
    cJSON_Delete(L.root);
    return 0;
}

int cmd_judge(int argc, char **argv) {
    if (has_run_flag(argc, argv)) return run_stage_command(argc, argv, "judge");
    Args a = {argc, argv, 1, "judge"};
    const char *config = NULL, *test = NULL, *answers = NULL, *out_dir = NULL, *cache_path = NULL;
    int no_cache = 0;
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf(
                "usage: llamaduo judge --config C.yaml --test TEST.jsonl --answers ANSWERS.jsonl --out-dir DIR [options]\n\n"
                "Has the judge (config: judge.service, else service) grade every answer M times (judge.judgments_per_answer)\n"
                "(with judge.services, a list, every judge does: judge-N.jsonl, metrics-N.json, and metrics.json with\n"
                "their agreement and the pass rule on the per-answer means across judges)\n"
                "for similarity to the reference and precision on the instruction, 1-100; writes DIR/judge.jsonl (every\n"
                "judgment) and DIR/metrics.json (mean, median, std, share >= 50 / >= 70, exact match, ROUGE-L, chrF, pass).\n"
                "ANSWERS.jsonl is what `llamaduo generate --input TEST.jsonl --samples K` writes.\n"
                "  --cache PATH   response cache (default DIR/cache.sqlite)\n"
                "  --no-cache     do not read the cache\n");
            return 0;
        }
        if (arg_value(&a, "--config", &config) || arg_value(&a, "--test", &test) || arg_value(&a, "--answers", &answers) ||
            arg_value(&a, "--out-dir", &out_dir) || arg_value(&a, "--cache", &cache_path))
            continue;
        if (arg_flag(&a, "--no-cache")) {
            no_cache = 1;
            continue;
        }
        arg_unknown(&a);
    }
    if (!config || !test || !answers || !out_dir) die("judge needs --config, --test, --answers and --out-dir (see --help)");
    Loaded L;
    load_stage_config(config, &L);
    StageConfig c = L.s;
    for (int j = 0; j < c.n_judges; j++)
        if (no_cache) c.judge_limits[j].use_cache = 0;
    Records tst;
    if (records_read(test, 1, &tst)) die("%s", ld_last_error());
    if (ld_mkdir_p(out_dir)) die("%s", ld_last_error());
    LlmCache *cache = open_cache(out_dir, cache_path);
    char *metrics = ld_path_join(out_dir, RUN_METRICS_NAME);
    JudgeSummary per[MAX_JUDGES] = {0}, s = {0};
    for (int j = 0; j < c.n_judges; j++)
        if (judge_prefers_itself(&c.judge, &c.judges[j])) judge_warn_self_preference(&c.judges[j]);
    char *judge_path = ld_path_join(out_dir, RUN_JUDGE_NAME), *scores = ld_path_join(out_dir, RUN_SCORES_NAME);
    int failed = judge_all(c.judges, c.judge_limits, c.n_judges, cache, &c.judge, &tst, answers, judge_path, scores, metrics, per, &s, NULL);
    free(judge_path), free(scores);
    if (failed) {  // everything freed before dying, so the sanitizer build's leak check stays quiet on this error path
        char *why = ld_xstrdup(ld_last_error());
        for (int j = 0; j < c.n_judges; j++) judge_summary_free(&per[j]);
        judge_summary_free(&s);
        free(metrics), cache_close(cache), records_free(&tst), stage_config_free(&L.s), cJSON_Delete(L.root);
        fprintf(stderr, "llamaduo: error: %s\n", why);
        free(why);
        return 1;
    }
    for (int j = 0; c.n_judges > 1 && j < c.n_judges; j++)
        printf("judge %d (%s): similarity mean %.1f, precision mean %.1f, %d answers never validly judged\n", j, c.judges[j].model,
               per[j].similarity.mean, per[j].precision.mean, per[j].unjudged_answers);
    if (c.judge.method != JUDGE_METRIC)
        printf(
            "judge: %d answers (%d never validly judged, %d of them errors), %d judgments (%d unusable): similarity mean %.1f median "
            "%.1f sd %.1f >=50 %.0f%% >=70 %.0f%%; precision mean %.1f median %.1f sd %.1f >=50 %.0f%% >=70 %.0f%%\n",
            s.answers, s.unjudged_answers, s.failed_answers, s.judgments, s.invalid_judgments, s.similarity.mean, s.similarity.median,
            s.similarity.std, 100 * s.similarity.share_ge50, 100 * s.similarity.share_ge70, s.precision.mean, s.precision.median,
            s.precision.std, 100 * s.precision.share_ge50, 100 * s.precision.share_ge70);
    printf("metrics:");
    for (int m = MEASURE_EXACT_MATCH; m < MEASURE_COUNT; m++)
        if (!isnan(s.measure[m])) printf(" %s %.3f", k_measures[m].name, s.measure[m]);
    char *rule = pass_rule_describe(c.judge.rule);
    printf("; %s (%s); $%.4f paid now, $%.4f reused from the cache -> %s\n", s.pass ? "PASS" : "below the pass rule", rule,
           s.client.new_cost_usd, s.client.cost_usd - s.client.new_cost_usd, metrics);
    free(rule);
    for (int j = 0; j < c.n_judges; j++) judge_summary_free(&per[j]);
    judge_summary_free(&s);
    free(metrics);
    cache_close(cache);
    records_free(&tst);
    stage_config_free(&L.s);
    cJSON_Delete(L.root);
    return 0;
}
