#define PCRE2_CODE_UNIT_WIDTH 8
#include "task_check.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_constraint.h"
#include "metrics.h"
#include "text.h"
#include "util.h"

int task_check_prepare(TaskCheck *c, const char *file) {
    if (c->labels) {
        if (!cJSON_IsArray(c->labels) || cJSON_GetArraySize(c->labels) < 1) {
            ld_set_error("%s: 'task.check.labels' must be a list of the answers allowed (strings)", file);
            return -1;
        }
        c->label_norm = ld_xcalloc((size_t)cJSON_GetArraySize(c->labels), sizeof(char *));
        for (const cJSON *e = c->labels->child; e; e = e->next) {
            if (!cJSON_IsString(e) || !*e->valuestring) {
                ld_set_error("%s: 'task.check.labels[%d]' must be a non-empty string", file, c->n_labels);
                return -1;
            }
            c->label_norm[c->n_labels++] = text_normalize(e->valuestring);
        }
        c->has[MEASURE_LABEL] = 1;
    }
    if (c->regex) {
        int err;
        PCRE2_SIZE off;
        c->re = pcre2_compile((PCRE2_SPTR)c->regex, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
        if (!c->re) {
            PCRE2_UCHAR msg[200];
            pcre2_get_error_message(err, msg, sizeof msg);
            ld_set_error("%s: 'task.check.regex' does not compile at offset %zu: %s", file, (size_t)off, (const char *)msg);
            return -1;
        }
        c->has[MEASURE_REGEX] = 1;
    }
    if (c->json) c->has[MEASURE_JSON_VALID] = 1;
    if (c->json_schema) {
        char *text = cJSON_PrintUnformatted(c->json_schema);
        c->schema = json_schema_compile(text);
        free(text);
        if (!c->schema) {
            ld_set_error("%s: 'task.check.json_schema': %s", file, ld_last_error());
            return -1;
        }
        c->has[MEASURE_JSON_SCHEMA] = 1;
    }
    if (c->command.command) c->has[MEASURE_CHECKER] = 1;
    if (c->reference_free && !c->command.command) {
        ld_set_error("%s: 'task.check.reference_free' is about task.check.command, which is not given", file);
        return -1;
    }
    return 0;
}

void task_check_free(TaskCheck *c) {
    pcre2_code_free(c->re);
    json_schema_free(c->schema);
    for (int i = 0; i < c->n_labels; i++) free(c->label_norm[i]);
    free(c->label_norm);
    c->re = NULL, c->schema = NULL, c->label_norm = NULL, c->n_labels = 0;
}

int task_check_verifies(const TaskCheck *c) {
    return c->has[MEASURE_LABEL] || c->has[MEASURE_REGEX] || c->has[MEASURE_JSON_VALID] || c->has[MEASURE_JSON_SCHEMA] ||
           (c->has[MEASURE_CHECKER] && c->reference_free);
}

// The answer without surrounding whitespace (heap).
static char *trim(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    char *t = ld_xmalloc(n + 1);
    memcpy(t, s, n);
    t[n] = 0;
    return t;
}

static double label_score(const TaskCheck *c, const char *answer, const char *reference) {
    char *a = text_normalize(answer);
    int in_set = 0;
    for (int i = 0; i < c->n_labels && !in_set; i++) in_set = !strcmp(a, c->label_norm[i]);
    int right = in_set && (!reference || metric_normalized_exact_match(answer, reference));
    free(a);
    return right;
}

static double regex_score(const TaskCheck *c, const char *t) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(c->re, NULL);
    int rc = pcre2_match(c->re, (PCRE2_SPTR)t, strlen(t), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

static double json_valid_score(const char *t) {
    cJSON *o = cJSON_ParseWithOpts(t, NULL, 1);
    int ok = o != NULL;
    cJSON_Delete(o);
    return ok;
}

static double json_schema_score(const TaskCheck *c, const char *t) {
    JsonMatcher *m = json_matcher_new(c->schema);
    int ok = json_matcher_feed(m, t, strlen(t)) == 0 && json_matcher_complete(m);
    json_matcher_free(m);
    return ok;
}

int task_check_score(const TaskCheck *c, const CheckItem *items, int n, double *out[MEASURE_COUNT], char ***reasons) {
    for (int m = 0; m < MEASURE_COUNT; m++) out[m] = NULL;
    if (reasons) *reasons = NULL;
    for (int m = MEASURE_LABEL; m <= MEASURE_JSON_SCHEMA; m++)
        if (c->has[m]) out[m] = ld_xcalloc((size_t)n + 1, sizeof(double));
    for (int i = 0; i < n; i++) {
        char *t = trim(items[i].answer ? items[i].answer : "");
        if (out[MEASURE_LABEL]) out[MEASURE_LABEL][i] = label_score(c, t, items[i].reference);
        if (out[MEASURE_REGEX]) out[MEASURE_REGEX][i] = regex_score(c, t);
        if (out[MEASURE_JSON_VALID]) out[MEASURE_JSON_VALID][i] = json_valid_score(t);
        if (out[MEASURE_JSON_SCHEMA]) out[MEASURE_JSON_SCHEMA][i] = json_schema_score(c, t);
        free(t);
    }
    if (c->has[MEASURE_CHECKER] && n > 0 && checker_command_run(&c->command, items, n, &out[MEASURE_CHECKER], reasons)) {
        for (int m = 0; m < MEASURE_COUNT; m++) free(out[m]), out[m] = NULL;
        return -1;
    }
    return 0;
}

int task_check_verify(const TaskCheck *c, const CheckItem *items, int n, int *ok, char **why) {
    TaskCheck only = *c;  // a command that needs a reference cannot judge a pair on its own
    if (!c->reference_free) only.has[MEASURE_CHECKER] = 0;
    double *s[MEASURE_COUNT];
    char **reasons;
    if (task_check_score(&only, items, n, s, &reasons)) return -1;
    for (int i = 0; i < n; i++) {
        ok[i] = 1, why[i] = NULL;
        for (int m = MEASURE_LABEL; m < MEASURE_COUNT && ok[i]; m++) {
            if (!s[m] || s[m][i] >= 0.5) continue;
            ok[i] = 0;
            char buf[400];
            if (m == MEASURE_LABEL)
                snprintf(buf, sizeof buf, "failed the task's checker: the response is not one of task.check.labels");
            else if (m == MEASURE_REGEX)
                snprintf(buf, sizeof buf, "failed the task's checker: the response does not match task.check.regex");
            else if (m == MEASURE_JSON_VALID)
                snprintf(buf, sizeof buf, "failed the task's checker: the response is not valid JSON");
            else if (m == MEASURE_JSON_SCHEMA)
                snprintf(buf, sizeof buf, "failed the task's checker: the response does not fit task.check.json_schema");
            else
                snprintf(buf, sizeof buf, "failed the task's checker: task.check.command scored it %.2f%s%s", s[m][i],
                         reasons && reasons[i] ? ": " : "", reasons && reasons[i] ? reasons[i] : "");
            why[i] = ld_xstrdup(buf);
        }
    }
    for (int m = 0; m < MEASURE_COUNT; m++) free(s[m]);
    checker_reasons_free(reasons, n);
    return 0;
}
