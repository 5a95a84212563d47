#include "answer_scores.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "util.h"

int answers_read(const char *path, const Records *test, Answer **out, int *n) {
    cJSON **items;
    int *lines, count, rc = 0;
    *out = NULL;
    *n = 0;
    if (jsonl_read(path, &items, &lines, &count, 0)) return -1;
    *out = ld_xcalloc((size_t)count, sizeof(Answer));
    for (int i = 0; i < count && !rc; i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(items[i], "id"), *tx = cJSON_GetObjectItemCaseSensitive(items[i], "text"),
                    *sm = cJSON_GetObjectItemCaseSensitive(items[i], "sample"), *er = cJSON_GetObjectItemCaseSensitive(items[i], "error");
        char idbuf[64];
        const char *ids = cJSON_IsString(id) ? id->valuestring : NULL;
        if (cJSON_IsNumber(id)) snprintf(idbuf, sizeof idbuf, "%.17g", id->valuedouble), ids = idbuf;
        int ti = -1;
        for (int k = 0; ids && k < test->n && ti < 0; k++)
            if (!strcmp(test->v[k].id, ids)) ti = k;
        if (!ids || (!cJSON_IsString(tx) && !cJSON_IsString(er))) {
            ld_set_error("%s:%d: an answer needs \"id\" and \"text\" (or \"error\")", path, lines[i]);
            rc = -1;
        } else if (ti < 0) {
            ld_set_error("%s:%d: answer id '%s' is not in the test set", path, lines[i], ids);
            rc = -1;
        } else {
            (*out)[(*n)++] =
                (Answer){ld_xstrdup(ids), cJSON_IsNumber(sm) ? sm->valueint : 0, ld_xstrdup(cJSON_IsString(tx) ? tx->valuestring : ""), ti,
                         cJSON_IsString(er) ? ld_xstrdup(er->valuestring) : NULL};
        }
    }
    for (int i = 0; i < count; i++) cJSON_Delete(items[i]);
    free(items), free(lines);
    if (rc) {
        for (int i = 0; i < *n; i++) free((*out)[i].id), free((*out)[i].text), free((*out)[i].error);
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void answers_free(Answer *a, int n) {
    for (int i = 0; i < n; i++) free(a[i].id), free(a[i].text), free(a[i].error);
    free(a);
}

// The judge's reasons for each answer: its first valid judgment's (judge.jsonl lists the M judgments of each
// answer together, in answer order). reasons[a] heap or NULL.
static char **judge_reasons(const char *judge_jsonl, const Answer *ans, int na) {
    char **out = ld_xcalloc((size_t)na + 1, sizeof(char *));
    cJSON **items;
    int *lines, n;
    if (!judge_jsonl || jsonl_read(judge_jsonl, &items, &lines, &n, 0)) return out;
    for (int k = 0, a = 0; k < n && a < na; k++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(items[k], "id"), *sm = cJSON_GetObjectItemCaseSensitive(items[k], "sample");
        while (a < na && cJSON_IsString(id) &&
               (strcmp(id->valuestring, ans[a].id) || (cJSON_IsNumber(sm) && sm->valueint != ans[a].sample)))
            a++;
        if (a >= na || out[a] || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(items[k], "valid"))) continue;
        const cJSON *sr = cJSON_GetObjectItemCaseSensitive(items[k], "similarity_reason"),
                    *pr = cJSON_GetObjectItemCaseSensitive(items[k], "precision_reason");
        char *s = ld_utf8_prefix(cJSON_IsString(sr) ? sr->valuestring : "", 500),
             *p = ld_utf8_prefix(cJSON_IsString(pr) ? pr->valuestring : "", 500);
        size_t n = strlen(s) + strlen(p) + 32;  // each reason cut at a character boundary, so the critique stays UTF-8
        out[a] = ld_xmalloc(n);
        snprintf(out[a], n, "similarity: %s; precision: %s", s, p);
        free(s), free(p);
    }
    for (int k = 0; k < n; k++) cJSON_Delete(items[k]);
    free(items), free(lines);
    return out;
}

// What was wrong with an answer, in words, from the measures that failed it (used when no judge gave reasons).
static char *metric_critique(const Answer *a, const char *reference, double *const v[MEASURE_COUNT], int i, const char *checker_reason) {
    char buf[1600], *ans = ld_utf8_prefix(a->error ? "" : a->text, 300), *ref = ld_utf8_prefix(reference, 300);
    int k = snprintf(buf, sizeof buf, "the student answered \"%s\"; the expected answer is \"%s\"", ans, ref);
    free(ans), free(ref);
    static const char *what[MEASURE_COUNT] = {[MEASURE_LABEL] = "not the right one of the task's labels",
                                              [MEASURE_REGEX] = "not in the form the task's regex requires",
                                              [MEASURE_JSON_VALID] = "not valid JSON",
                                              [MEASURE_JSON_SCHEMA] = "not fitting the task's JSON schema"};
    for (int m = MEASURE_LABEL; m < MEASURE_CHECKER; m++)
        if (v[m] && v[m][i] < 0.5 && k < (int)sizeof buf) k += snprintf(buf + k, sizeof buf - (size_t)k, "; the answer is %s", what[m]);
    if (v[MEASURE_CHECKER] && v[MEASURE_CHECKER][i] < 1 && k < (int)sizeof buf) {
        char *why = ld_utf8_prefix(checker_reason ? checker_reason : "", 300);  // every part is bounded: buf is not cut
        snprintf(buf + k, sizeof buf - (size_t)k, "; the task's checker scored it %.2f%s%s", v[MEASURE_CHECKER][i], *why ? ": " : "", why);
        free(why);
    }
    return ld_xstrdup(buf);
}

// The answer's score in 0..1 on the measures the pass rule names (judge scores / 100): what targeting ranks by.
static double item_score(const PassRule *rule, double *const v[MEASURE_COUNT], int i) {
    double s = 0;
    int n = 0;
    for (int m = 0; m < MEASURE_COUNT; m++)
        if (v[m] && pass_rule_uses(rule, (Measure)m) && !isnan(v[m][i])) s += v[m][i], n++;
    return n ? s / n : NAN;
}

// Whether the pass rule holds on this answer alone: each measure read as if the answer were the whole test set
// (a judge score as its mean and median, >= 50 and >= 70 as shares of 1 or 0). What targeting counts as wrong.
static int item_passes(const PassRule *rule, double *const v[MEASURE_COUNT], int i) {
    cJSON *m = cJSON_CreateObject(), *report;
    for (int k = 0; k < MEASURE_COUNT; k++) {
        if (!v[k] || isnan(v[k][i])) continue;
        if (k_measures[k].source == FROM_JUDGE) {
            double score = 100 * v[k][i];
            cJSON *o = cJSON_AddObjectToObject(m, k_measures[k].name);
            cJSON_AddNumberToObject(o, "mean", score), cJSON_AddNumberToObject(o, "median", score);
            cJSON_AddNumberToObject(o, "share_ge50", score >= 50), cJSON_AddNumberToObject(o, "share_ge70", score >= 70);
        } else {
            cJSON_AddNumberToObject(m, k_measures[k].name, v[k][i]);
        }
    }
    int held = pass_rule_eval(rule, m, &report);
    cJSON_Delete(report), cJSON_Delete(m);
    return held;
}

static void add_number_or_null(cJSON *o, const char *key, double v) {
    if (isnan(v))
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, v);
}

int answer_scores_write(const JudgeConfig *cfg, const Records *test, const char *answers_path, const JudgeSummary *judged,
                        const char *judge_jsonl, const char *scores_path, const char *metrics_path, JudgeSummary *sum) {
    Answer *ans;
    int na;
    if (answers_read(answers_path, test, &ans, &na)) return -1;
    CheckItem *items = ld_xcalloc((size_t)na + 1, sizeof(CheckItem));
    char **ids = ld_xcalloc((size_t)na + 1, sizeof(char *));
    for (int a = 0; a < na; a++) {
        const Record *t = &test->v[ans[a].test_index];
        size_t n = strlen(ans[a].id) + 16;
        ids[a] = ld_xmalloc(n);
        snprintf(ids[a], n, "%s#%d", ans[a].id, ans[a].sample);  // unique per answer: K samples share an id
        items[a] = (CheckItem){ids[a], t->instruction, t->response ? t->response : "", ans[a].error ? "" : ans[a].text};
    }
    double *v[MEASURE_COUNT];
    char **checker_reasons = NULL;
    int rc = cfg->check ? task_check_score(cfg->check, items, na, v, &checker_reasons) : 0;
    if (!cfg->check)
        for (int m = 0; m < MEASURE_COUNT; m++) v[m] = NULL;
    if (rc == 0) {
        for (int m = MEASURE_SIMILARITY; m <= MEASURE_CHRF; m++) v[m] = ld_xcalloc((size_t)na + 1, sizeof(double));
        for (int a = 0; a < na; a++) {
            const char *ref = items[a].reference, *txt = items[a].answer;
            v[MEASURE_SIMILARITY][a] = judged && judged->answer_similarity ? judged->answer_similarity[a] / 100 : NAN;
            v[MEASURE_PRECISION][a] = judged && judged->answer_precision ? judged->answer_precision[a] / 100 : NAN;
            v[MEASURE_EXACT_MATCH][a] = metric_exact_match(txt, ref);
            v[MEASURE_NORMALIZED_EXACT_MATCH][a] = metric_normalized_exact_match(txt, ref);
            v[MEASURE_ROUGE_L][a] = metric_rouge_l(txt, ref);
            v[MEASURE_CHRF][a] = metric_chrf(txt, ref);
        }
        cJSON *mj = judged ? json_read_file(metrics_path) : NULL;
        if (!mj) {
            mj = cJSON_CreateObject();
            cJSON_AddNumberToObject(mj, "answers", na);
            int failed = 0;
            for (int a = 0; a < na; a++) failed += ans[a].error != NULL;
            cJSON_AddNumberToObject(mj, "failed_answers", failed);
            sum->answers = na, sum->failed_answers = failed;
        }
        cJSON_DeleteItemFromObject(mj, "method");
        cJSON_AddStringToObject(mj, "method", cfg->method == JUDGE_METRIC ? "metric" : cfg->method == JUDGE_BOTH ? "both" : "llm");
        for (int m = MEASURE_EXACT_MATCH; m < MEASURE_COUNT; m++) {
            sum->measure[m] = NAN;
            if (!v[m]) continue;
            double s = 0;
            for (int a = 0; a < na; a++) s += v[m][a];
            sum->measure[m] = na ? s / na : NAN;
            cJSON_DeleteItemFromObject(mj, k_measures[m].name);
            add_number_or_null(mj, k_measures[m].name, sum->measure[m]);
        }
        cJSON *report;
        sum->pass = pass_rule_eval(cfg->rule, mj, &report);
        char *text = pass_rule_describe(cfg->rule);
        cJSON_DeleteItemFromObject(mj, "rule"), cJSON_DeleteItemFromObject(mj, "pass_rule"), cJSON_DeleteItemFromObject(mj, "pass");
        cJSON_AddStringToObject(mj, "pass_rule", text);
        cJSON_AddItemToObject(mj, "rule", report);
        cJSON_AddBoolToObject(mj, "pass", sum->pass);
        free(text);
        char **reasons = judge_reasons(judge_jsonl, ans, na);
        cJSON **lines = ld_xcalloc((size_t)na + 1, sizeof(cJSON *));
        for (int a = 0; a < na; a++) {
            cJSON *o = lines[a] = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", ans[a].id);
            cJSON_AddNumberToObject(o, "sample", ans[a].sample);
            for (int m = 0; m < MEASURE_COUNT; m++)
                if (v[m] && (m > MEASURE_PRECISION || judged)) add_number_or_null(o, k_measures[m].name, v[m][a]);
            add_number_or_null(o, "score", item_score(cfg->rule, v, a));
            cJSON_AddBoolToObject(o, "passed", item_passes(cfg->rule, v, a));
            cJSON_AddStringToObject(o, "answer", items[a].answer);
            char *why = reasons[a] ? ld_xstrdup(reasons[a])
                                   : metric_critique(&ans[a], items[a].reference, v, a, checker_reasons ? checker_reasons[a] : NULL);
            cJSON_AddStringToObject(o, "critique", why);
            free(why);
        }
        if (jsonl_write_atomic(scores_path, lines, na) || jsonl_write_atomic(metrics_path, &mj, 1)) rc = -1;
        for (int a = 0; a < na; a++) cJSON_Delete(lines[a]), free(reasons[a]);
        free(lines), free(reasons);
        cJSON_Delete(mj);
    }
    for (int m = 0; m < MEASURE_COUNT; m++) free(v[m]);
    checker_reasons_free(checker_reasons, na);
    for (int a = 0; a < na; a++) free(ids[a]);
    free(ids), free(items);
    answers_free(ans, na);
    return rc;
}
