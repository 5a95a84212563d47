#include "stage_config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "options.h"
#include "util.h"

#define S(field) offsetof(StageConfig, field)
static const OptionSpec k_check_options[] = {
    {"labels", OPT_LIST, S(check.labels), 0, 0, NULL, NULL, "the answers allowed: an answer must be one of them, and the reference's"},
    {"regex", OPT_STR, S(check.regex), 0, 0, NULL, NULL, "a PCRE2 pattern the answer (trimmed) must match"},
    {"json", OPT_BOOL, S(check.json), 0, 1, "0", NULL, "the answer must be valid JSON"},
    {"json_schema", OPT_MAP, S(check.json_schema), 0, 0, NULL, NULL, "a JSON schema the answer must fit"},
    {"command", OPT_STR, S(check.command.command), 0, 0, NULL, NULL,
     "a checker program: JSONL {id, prompt, reference, answer} on stdin, {id, score} lines out"},
    {"timeout_s", OPT_NUM, S(check.command.timeout_s), 0.1, 86400, "60", NULL, "the checker's time limit per batch"},
    {"reference_free", OPT_BOOL, S(check.reference_free), 0, 1, "0", NULL,
     "the checker decides a pair without a reference: synthetic pairs are verified by it"},
    {NULL}};
static const OptionSpec k_task_options[] = {
    {"description", OPT_STR, S(synth.task), 0, 0, NULL, NULL, "what the task is, in words", NULL, 1},
    {"check", OPT_SECTION, 0, 0, 0, NULL, NULL, "the task's own checks of an answer", k_check_options},
    {NULL}};
static const OptionSpec k_synth_options[] = {
    {"calls", OPT_INT, S(synth.calls), 1, 1000000, "20", NULL, "requests for synthetic pairs in round 2 (grows by run.synth_growth)"},
    {"pairs_per_call", OPT_INT, S(synth.pairs_per_call), 1, 100, "5", NULL, "pairs asked for in each request"},
    {"seed", OPT_INT, S(synth.seed), 0, 2147483647, "1", NULL, "which seeds each request shows"},
    {"max_instruction_chars", OPT_INT, S(synth.max_instruction_chars), 1, 1 << 24, "4000", NULL, "longest instruction kept"},
    {"max_response_chars", OPT_INT, S(synth.max_response_chars), 1, 1 << 24, "8000", NULL, "longest response kept"},
    {"dedup_threshold", OPT_NUM, S(synth.dedup_threshold), 0.01, 1, "0.8", NULL, "shingle Jaccard that makes a near-duplicate"},
    {"decontam_ngram", OPT_INT, S(synth.decontam_ngram), 1, 64, "8", NULL, "n-gram length of decontamination"},
    {"decontam_threshold", OPT_NUM, S(synth.decontam_threshold), 0.01, 1, "0.5", NULL, "share of n-grams found in a test record"},
    {"max_reask", OPT_INT, S(synth.max_reask), 0, 20, "2", NULL, "re-asks of a reply off the contract"},
    {"strategy", OPT_CHOICE, S(synth.strategy), 0, 0, "targeted", "targeted|uniform",
     "seeds drawn toward the last probe's worst answers, shown with their critiques; or uniformly"},
    {"target_share", OPT_NUM, S(synth.target_share), 0.05, 1, "0.5", NULL, "the share of calls aimed at the probe's failures"},
    {NULL}};
static const OptionSpec k_judge_options[] = {
    {"judgments_per_answer", OPT_INT, S(judge.judgments_per_answer), 1, 100, "1", NULL, "judgments of each answer (M)"},
    {"max_rejudge", OPT_INT, S(judge.max_rejudge), 0, 20, "3", NULL, "extra asks for a judgment whose replies were unusable"},
    {"method", OPT_CHOICE, S(judge_method), 0, 0, "llm", "llm|metric|both",
     "who scores: the judge LLM, the metrics and checks only, or both"},
    {"pass", OPT_VALUE, S(judge_pass), 0, 0, NULL, NULL,
     "the pass rule: a condition ('exact_match >= 0.9'), a list (all), or {all|any: [...]}"},
    {"threshold", OPT_NUM, S(judge.threshold), 1, 100, "90", NULL, "the default pass rule: mean similarity and precision at least this"},
    {"service", OPT_MAP, S(judge_service), 0, 0, NULL, NULL, "the judge, when it is not the service LLM"},
    {"services", OPT_LIST, S(judge_services), 0, 0, NULL, NULL, "several judges: per-judge scores and their agreement"},
    {NULL}};
#undef S

// privacy.enabled: given (true or false), or on when any service the stages call is remote (not service.local).
static int privacy_setup(StageConfig *c, const cJSON *section, const char *path) {
    int remote = !c->local;
    for (int j = 0; j < c->n_judges && !c->judge_is_service; j++) remote = 1;  // a judge of its own is never service.local
    if (privacy_config_read(section, path, remote, &c->privacy)) return -1;
    if (!c->privacy.enabled) return 0;
    c->scrubber = scrubber_new(&c->privacy, path);
    if (!c->scrubber) return -1;
    c->limits.privacy = c->scrubber;
    for (int j = 0; j < c->n_judges; j++) c->judge_limits[j].privacy = c->scrubber;
    c->synth.surrogates = c->privacy.surrogates, c->synth.privacy = c->scrubber;
    return 0;
}

int stage_config_parse(cJSON *root, const char *path, const char *const *extra_top, int allow_local, StageConfig *c) {
    memset(c, 0, sizeof *c);
    const char *top[16] = {"service", "task", "synth", "judge", "privacy"};
    int nt = 5;
    for (int i = 0; extra_top && extra_top[i] && nt < 15; i++) top[nt++] = extra_top[i];
    top[nt] = NULL;
    cJSON *svc = cJSON_GetObjectItemCaseSensitive(root, "service");
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
    const cJSON *sy = cJSON_GetObjectItemCaseSensitive(root, "synth");
    const cJSON *ju = cJSON_GetObjectItemCaseSensitive(root, "judge");
    if (cfg_check_keys(root, "", top, path)) return -1;
    if (!cJSON_IsObject(svc)) {
        ld_set_error("%s: missing 'service' section (the service LLM)", path);
        return -1;
    }
    if (!cJSON_IsObject(task)) {
        ld_set_error("%s: missing 'task' section (task.description says what the task is)", path);
        return -1;
    }
    cJSON *local = cJSON_GetObjectItemCaseSensitive(svc, "local");
    if (local && !allow_local) {
        ld_set_error("%s: 'service.local' is for `llamaduo run` configs only", path);
        return -1;
    }
    if (local) {  // served by the run itself: the address is known only when it starts
        if (cJSON_GetObjectItemCaseSensitive(svc, "base_url")) {
            ld_set_error("%s: give either 'service.local' or 'service.base_url', not both", path);
            return -1;
        }
        c->local = cJSON_DetachItemViaPointer(svc, local);
        if (!cJSON_GetObjectItemCaseSensitive(svc, "provider")) cJSON_AddStringToObject(svc, "provider", "openai");
        if (!cJSON_GetObjectItemCaseSensitive(svc, "model")) cJSON_AddStringToObject(svc, "model", "local");
    }
    int rc = -1;
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(root, "privacy");
    options_defaults(k_task_options, c), options_defaults(k_synth_options, c), options_defaults(k_judge_options, c);
    if (cfg_service(svc, "service", path, &c->service, &c->limits) || options_from_json(k_task_options, c, task, "task", path) ||
        options_from_json(k_synth_options, c, sy, "synth", path) || options_from_json(k_judge_options, c, ju, "judge", path))
        goto done;
    const cJSON *jsvc = c->judge_service, *jlist = c->judge_services;
    if (jsvc && jlist) {
        ld_set_error("%s: give either 'judge.service' or 'judge.services', not both", path);
        goto done;
    }
    if (jlist) {  // several judges: per-judge scores and their agreement
        if (!cJSON_IsArray(jlist) || cJSON_GetArraySize(jlist) < 1 || cJSON_GetArraySize(jlist) > MAX_JUDGES) {
            ld_set_error("%s: 'judge.services' must be a list of 1 to %d services", path, MAX_JUDGES);
            goto done;
        }
        for (const cJSON *e = jlist->child; e; e = e->next) {
            char where[48];
            snprintf(where, sizeof where, "judge.services[%d]", c->n_judges);
            if (cfg_service(e, where, path, &c->judges[c->n_judges], &c->judge_limits[c->n_judges])) goto done;
            c->n_judges++;
        }
    } else if (jsvc) {
        if (cfg_service(jsvc, "judge.service", path, &c->judges[0], &c->judge_limits[0])) goto done;
        c->n_judges = 1;
    } else {
        c->judges[0] = c->service;
        c->judge_limits[0] = c->limits;
        c->n_judges = 1;
        c->judge_is_service = 1;
    }
    c->judge.generator_model = c->service.model;
    c->judge.method = !strcmp(c->judge_method, "metric") ? JUDGE_METRIC : !strcmp(c->judge_method, "both") ? JUDGE_BOTH : JUDGE_LLM;
    if (task_check_prepare(&c->check, path) ||
        pass_rule_parse(c->judge_pass, c->judge.threshold, c->judge.method, c->check.has, path, &c->rule))
        goto done;
    c->judge.rule = &c->rule, c->judge.check = &c->check;
    c->synth.check = &c->check;
    if (privacy_setup(c, pv, path)) goto done;
    rc = 0;
done:
    return rc;
}

void stage_config_free(StageConfig *c) {
    scrubber_free(c->scrubber);
    c->scrubber = NULL;
    task_check_free(&c->check);
    pass_rule_free(&c->rule);
}
