#include "stage_config.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "util.h"

int stage_config_parse(cJSON *root, const char *path, const char *const *extra_top, int allow_local, StageConfig *c) {
    memset(c, 0, sizeof *c);
    const char *top[16] = {"service", "task", "synth", "judge"};
    int nt = 4;
    for (int i = 0; extra_top && extra_top[i] && nt < 15; i++) top[nt++] = extra_top[i];
    top[nt] = NULL;
    static const char *const task_keys[] = {"description", NULL};
    static const char *const synth_keys[] = {"calls",
                                             "pairs_per_call",
                                             "seed",
                                             "max_instruction_chars",
                                             "max_response_chars",
                                             "dedup_threshold",
                                             "decontam_ngram",
                                             "decontam_threshold",
                                             "max_reask",
                                             NULL};
    static const char *const judge_keys[] = {"judgments_per_answer", "max_rejudge", "threshold", "service", "services", NULL};
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
    cJSON *empty = cJSON_CreateObject();
    if (!sy) sy = empty;
    if (!ju) ju = empty;
    int seed, rc = -1;
    if (cfg_service(svc, "service", path, &c->service, &c->limits) || cfg_check_keys(task, "task", task_keys, path) ||
        cfg_get_str(task, "description", "task", NULL, &c->synth.task, path) || cfg_check_keys(sy, "synth", synth_keys, path) ||
        cfg_get_int(sy, "calls", "synth", 20, 1, 1000000, &c->synth.calls, path) ||
        cfg_get_int(sy, "pairs_per_call", "synth", 5, 1, 100, &c->synth.pairs_per_call, path) ||
        cfg_get_int(sy, "seed", "synth", 1, 0, 2147483647, &seed, path) ||
        cfg_get_int(sy, "max_instruction_chars", "synth", 4000, 1, 1 << 24, &c->synth.max_instruction_chars, path) ||
        cfg_get_int(sy, "max_response_chars", "synth", 8000, 1, 1 << 24, &c->synth.max_response_chars, path) ||
        cfg_get_num(sy, "dedup_threshold", "synth", 0.8, 0.01, 1, &c->synth.dedup_threshold, path) ||
        cfg_get_int(sy, "decontam_ngram", "synth", 8, 1, 64, &c->synth.decontam_ngram, path) ||
        cfg_get_num(sy, "decontam_threshold", "synth", 0.5, 0.01, 1, &c->synth.decontam_threshold, path) ||
        cfg_get_int(sy, "max_reask", "synth", 2, 0, 20, &c->synth.max_reask, path) || cfg_check_keys(ju, "judge", judge_keys, path) ||
        cfg_get_int(ju, "judgments_per_answer", "judge", 1, 1, 100, &c->judge.judgments_per_answer, path) ||
        cfg_get_int(ju, "max_rejudge", "judge", 3, 0, 20, &c->judge.max_rejudge, path) ||
        cfg_get_num(ju, "threshold", "judge", 90, 1, 100, &c->judge.threshold, path))
        goto done;
    c->synth.seed = (unsigned)seed;
    const cJSON *jsvc = cJSON_GetObjectItemCaseSensitive(ju, "service"), *jlist = cJSON_GetObjectItemCaseSensitive(ju, "services");
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
    rc = 0;
done:
    cJSON_Delete(empty);
    return rc;
}
