#include "pass_rule.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const MeasureInfo k_measures[MEASURE_COUNT] = {
    [MEASURE_SIMILARITY] = {"similarity", FROM_JUDGE, NULL},
    [MEASURE_PRECISION] = {"precision", FROM_JUDGE, NULL},
    [MEASURE_EXACT_MATCH] = {"exact_match", FROM_REFERENCE, NULL},
    [MEASURE_NORMALIZED_EXACT_MATCH] = {"normalized_exact_match", FROM_REFERENCE, NULL},
    [MEASURE_ROUGE_L] = {"rouge_l", FROM_REFERENCE, NULL},
    [MEASURE_CHRF] = {"chrf", FROM_REFERENCE, NULL},
    [MEASURE_LABEL] = {"label", FROM_CHECK, "labels"},
    [MEASURE_REGEX] = {"regex", FROM_CHECK, "regex"},
    [MEASURE_JSON_VALID] = {"json_valid", FROM_CHECK, "json"},
    [MEASURE_JSON_SCHEMA] = {"json_schema", FROM_CHECK, "json_schema"},
    [MEASURE_CHECKER] = {"checker", FROM_CHECK, "command"},
};
static const char *k_stats[] = {"mean", "median", "share_ge50", "share_ge70"};
static const char *k_ops[] = {">=", ">", "<=", "<", "=="};

static const char *measure_names(void) {
    static char buf[256];
    if (!buf[0])
        for (int m = 0; m < MEASURE_COUNT; m++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", m ? ", " : "", k_measures[m].name);
    return buf;
}

// "MEASURE[.STAT] OP NUMBER[%]"
static int parse_condition(const char *text, const char *where, const char *file, PassRule *c) {
    memset(c, 0, sizeof *c);
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    char name[64];
    size_t n = 0;
    while ((isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '.') && n < sizeof name - 1) name[n] = p[n], n++;
    name[n] = 0;
    p += n;
    char *dot = strchr(name, '.');
    if (dot) *dot = 0;
    int m = -1;
    for (int i = 0; i < MEASURE_COUNT && m < 0; i++)
        if (!strcmp(name, k_measures[i].name)) m = i;
    if (m < 0) {
        ld_set_error("%s: '%s' is \"%s\": '%s' is not a measure (one of: %s), as in 'exact_match >= 0.9'", file, where, text, name,
                     measure_names());
        return -1;
    }
    c->measure = (Measure)m, c->stat = STAT_MEAN;
    if (dot) {
        int s = -1;
        for (int i = 0; i < 4 && s < 0; i++)
            if (!strcmp(dot + 1, k_stats[i])) s = i;
        if (s < 0 || (s > 0 && k_measures[m].source != FROM_JUDGE)) {
            ld_set_error(
                "%s: '%s' is \"%s\": '%s.%s' is not a statistic (%s takes %s)", file, where, text, name, dot + 1, name,
                k_measures[m].source == FROM_JUDGE ? ".mean, .median, .share_ge50 or .share_ge70" : "only .mean, its share of answers");
            return -1;
        }
        c->stat = (MeasureStat)s;
    }
    while (isspace((unsigned char)*p)) p++;
    int op = -1;
    for (int i = 0; i < 5 && op < 0; i++)
        if (!strncmp(p, k_ops[i], strlen(k_ops[i]))) op = i;  // >= before >, <= before <
    if (op < 0) {
        ld_set_error("%s: '%s' is \"%s\": a comparison (>=, >, <=, < or ==) must follow '%s'", file, where, text, name);
        return -1;
    }
    p += strlen(k_ops[op]);
    char *end;
    double v = strtod(p, &end);
    if (end == p) {
        ld_set_error("%s: '%s' is \"%s\": a number must follow '%s'", file, where, text, k_ops[op]);
        return -1;
    }
    int percent = *end == '%';
    if (percent) end++, v /= 100;
    while (isspace((unsigned char)*end)) end++;
    if (*end || !isfinite(v)) {
        ld_set_error("%s: '%s' is \"%s\": unexpected '%s' after the number", file, where, text, end);
        return -1;
    }
    int judge_scale = k_measures[m].source == FROM_JUDGE && c->stat <= STAT_MEDIAN;
    double lo = judge_scale && !percent ? 1 : 0, hi = judge_scale && !percent ? 100 : 1;
    if (judge_scale && percent) v *= 100, lo = 1, hi = 100;  // "90%" of the judge's scale is 90
    if (v < lo || v > hi) {
        ld_set_error("%s: '%s' is \"%s\": %s is %s, so %g is out of range", file, where, text, name,
                     judge_scale ? "a judge score from 1 to 100" : "a share from 0 to 1 (or 0% to 100%)", v);
        return -1;
    }
    c->op = (RuleOp)op, c->value = v;
    c->text = ld_xstrdup(text);
    return 0;
}

static int check_available(const PassRule *c, JudgeMethod method, const int *has_check, const char *where, const char *file) {
    const MeasureInfo *mi = &k_measures[c->measure];
    if (mi->source == FROM_JUDGE && method == JUDGE_METRIC) {
        ld_set_error("%s: '%s' is \"%s\", a judge score, but judge.method is metric (no judge is asked): use both, or a metric", file,
                     where, c->text);
        return -1;
    }
    if (mi->source != FROM_JUDGE && method == JUDGE_LLM) {
        ld_set_error(
            "%s: '%s' is \"%s\", a metric, but judge.method is llm (the judge's scores decide): set judge.method to metric or both", file,
            where, c->text);
        return -1;
    }
    if (mi->source == FROM_CHECK && !has_check[c->measure]) {
        ld_set_error("%s: '%s' is \"%s\", which needs task.check.%s (the task's own check)", file, where, c->text, mi->check_key);
        return -1;
    }
    return 0;
}

static int parse_node(const cJSON *node, JudgeMethod method, const int *has_check, const char *where, const char *file, int depth,
                      PassRule *out) {
    memset(out, 0, sizeof *out);
    if (depth > 8) {
        ld_set_error("%s: '%s' nests rules more than 8 deep", file, where);
        return -1;
    }
    if (cJSON_IsString(node))
        return parse_condition(node->valuestring, where, file, out) || check_available(out, method, has_check, where, file) ? -1 : 0;
    const cJSON *list = node;
    if (cJSON_IsObject(node)) {
        const cJSON *all = cJSON_GetObjectItemCaseSensitive(node, "all"), *any = cJSON_GetObjectItemCaseSensitive(node, "any");
        if (cJSON_GetArraySize(node) != 1 || (!all && !any)) {
            ld_set_error("%s: '%s' as a mapping must have exactly one key, all or any, holding a list of conditions", file, where);
            return -1;
        }
        list = all ? all : any;
        out->any = any != NULL;
    }
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) < 1) {
        ld_set_error("%s: '%s' must be a condition ('exact_match >= 0.9'), a list of them, or {all: [...]} / {any: [...]}", file, where);
        return -1;
    }
    out->is_group = 1;
    out->n_parts = cJSON_GetArraySize(list);
    out->parts = ld_xcalloc((size_t)out->n_parts, sizeof(PassRule));
    int i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
        char sub[128];
        snprintf(sub, sizeof sub, "%.100s[%d]", where, i % 100000);
        if (parse_node(e, method, has_check, sub, file, depth + 1, &out->parts[i])) {
            out->n_parts = i + 1;
            return -1;
        }
    }
    return 0;
}

int pass_rule_parse(const cJSON *pass, double threshold, JudgeMethod method, const int has_check[MEASURE_COUNT], const char *file,
                    PassRule *out) {
    if (pass && cJSON_IsString(pass)) {  // one condition: a group of one, so every report has the same shape
        memset(out, 0, sizeof *out);
        out->is_group = 1, out->n_parts = 1;
        out->parts = ld_xcalloc(1, sizeof(PassRule));
        int rc = parse_node(pass, method, has_check, "judge.pass", file, 0, out->parts);
        if (rc) pass_rule_free(out);
        return rc;
    }
    if (pass) {
        if (parse_node(pass, method, has_check, "judge.pass", file, 0, out)) {
            pass_rule_free(out);
            return -1;
        }
        return 0;
    }
    if (method == JUDGE_METRIC) {
        ld_set_error("%s: judge.method is metric, so 'judge.pass' must say what passes, e.g. 'exact_match >= 0.9'", file);
        return -1;
    }
    char a[64], b[64];  // the paper's rule
    snprintf(a, sizeof a, "similarity.mean >= %g", threshold);
    snprintf(b, sizeof b, "precision.mean >= %g", threshold);
    cJSON *def = cJSON_CreateArray();
    cJSON_AddItemToArray(def, cJSON_CreateString(a));
    cJSON_AddItemToArray(def, cJSON_CreateString(b));
    int rc = parse_node(def, method, has_check, "judge.threshold", file, 0, out);
    cJSON_Delete(def);
    if (rc) pass_rule_free(out);
    return rc;
}

void pass_rule_free(PassRule *r) {
    for (int i = 0; i < r->n_parts; i++) pass_rule_free(&r->parts[i]);
    free(r->parts);
    free(r->text);
    memset(r, 0, sizeof *r);
}

int pass_rule_uses(const PassRule *r, Measure m) {
    if (!r->is_group) return r->text && r->measure == m;
    for (int i = 0; i < r->n_parts; i++)
        if (pass_rule_uses(&r->parts[i], m)) return 1;
    return 0;
}

double pass_rule_value(const PassRule *c, const cJSON *metrics) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(metrics, k_measures[c->measure].name);
    if (k_measures[c->measure].source == FROM_JUDGE) v = cJSON_GetObjectItemCaseSensitive(v, k_stats[c->stat]);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int holds(const PassRule *c, double v) {
    if (isnan(v)) return 0;
    switch (c->op) {
        case OP_GE:
            return v >= c->value;
        case OP_GT:
            return v > c->value;
        case OP_LE:
            return v <= c->value;
        case OP_LT:
            return v < c->value;
        default:
            return v == c->value;
    }
}

int pass_rule_eval(const PassRule *r, const cJSON *metrics, cJSON **report) {
    cJSON *o = cJSON_CreateObject();
    int held;
    if (!r->is_group) {
        double v = pass_rule_value(r, metrics);
        held = holds(r, v);
        cJSON_AddStringToObject(o, "condition", r->text);
        if (isnan(v))
            cJSON_AddNullToObject(o, "value");  // not measured: fails
        else
            cJSON_AddNumberToObject(o, "value", v);
    } else {
        held = !r->any;
        cJSON_AddStringToObject(o, "combine", r->any ? "any" : "all");
        cJSON *parts = cJSON_AddArrayToObject(o, "conditions");
        for (int i = 0; i < r->n_parts; i++) {
            cJSON *sub;
            int h = pass_rule_eval(&r->parts[i], metrics, &sub);
            cJSON_AddItemToArray(parts, sub);
            held = r->any ? (held || h) : (held && h);
        }
    }
    cJSON_AddBoolToObject(o, "held", held);
    *report = o;
    return held;
}

static void describe(const PassRule *r, char **buf, size_t *len, int top) {
    if (!r->is_group) {
        size_t n = strlen(r->text) + 1;
        *buf = ld_xrealloc(*buf, *len + n);
        memcpy(*buf + *len, r->text, n);
        *len += n - 1;
        return;
    }
    const char *join = r->any ? " or " : " and ";
    for (int i = 0; i < r->n_parts; i++) {
        const char *pre = i ? join : (!top && r->n_parts > 1 ? "(" : "");
        size_t n = strlen(pre);
        *buf = ld_xrealloc(*buf, *len + n + 2);
        memcpy(*buf + *len, pre, n + 1);
        *len += n;
        describe(&r->parts[i], buf, len, 0);
    }
    if (!top && r->n_parts > 1) {
        *buf = ld_xrealloc(*buf, *len + 2);
        (*buf)[(*len)++] = ')';
        (*buf)[*len] = 0;
    }
}

char *pass_rule_describe(const PassRule *r) {
    char *buf = ld_xstrdup("");
    size_t len = 0;
    describe(r, &buf, &len, 1);
    return buf;
}

static void score_sum(const PassRule *r, const cJSON *metrics, double *sum, int *n) {
    if (r->is_group) {
        for (int i = 0; i < r->n_parts; i++) score_sum(&r->parts[i], metrics, sum, n);
        return;
    }
    double v = pass_rule_value(r, metrics);
    int judge_scale = k_measures[r->measure].source == FROM_JUDGE && r->stat <= STAT_MEDIAN;
    if (!isnan(v)) *sum += judge_scale ? v : 100 * v, (*n)++;
}

double pass_rule_score(const PassRule *r, const cJSON *metrics) {
    double sum = 0;
    int n = 0;
    score_sum(r, metrics, &sum, &n);
    return n ? sum / n : NAN;
}
