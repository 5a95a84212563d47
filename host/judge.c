#include "judge.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

char *judge_prompt(const char *instruction, const char *reference, const char *candidate) {
    static const char *fmt =
        "You are grading an answer written by an assistant against a reference answer written by a person.\n\n"
        "Instruction:\n%s\n\nReference answer:\n%s\n\nCandidate answer:\n%s\n\n"
        "Give two integer scores from 1 (worst) to 100 (best), each with a one-sentence reason:\n"
        "- similarity: how closely the candidate matches the reference in content, structure and style;\n"
        "- precision: how accurately and completely the candidate carries out the instruction.\n"
        "Reply with this JSON object and nothing else:\n"
        "{\"similarity_assessment\": {\"score\": <1-100>, \"reason\": \"...\"}, "
        "\"precision_assessment\": {\"score\": <1-100>, \"reason\": \"...\"}}";
    size_t n = strlen(fmt) + strlen(instruction) + strlen(reference) + strlen(candidate) + 1;
    char *s = ld_xmalloc(n);
    snprintf(s, n, fmt, instruction, reference, candidate);
    return s;
}

// A score as the judge wrote it: a number, or a string starting with one ("85.5", "85/100", "85 %").
static int score_value(const cJSON *v, double *out) {
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 0;
    }
    if (cJSON_IsString(v)) {
        char *end;
        double x = strtod(v->valuestring, &end);
        if (end == v->valuestring) return -1;
        *out = x;
        return 0;
    }
    return -1;
}

static int read_assessment(const cJSON *obj, const char *key, double *score, char **reason, char *err, size_t errcap) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsObject(a)) {
        snprintf(err, errcap, "no \"%s\" object", key);
        return -1;
    }
    if (score_value(cJSON_GetObjectItemCaseSensitive(a, "score"), score)) {
        snprintf(err, errcap, "%s.score is not a number", key);
        return -1;
    }
    if (!(*score >= 1 && *score <= 100)) {
        snprintf(err, errcap, "%s.score %g is outside 1..100", key, *score);
        return -1;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(a, "reason");
    *reason = ld_xstrdup(cJSON_IsString(r) ? r->valuestring : "");
    return 0;
}

int judge_parse(const char *text, JudgeScores *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    snprintf(err, errcap, "no JSON object in the judge's reply");
    for (const char *p = strchr(text, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = NULL;
        cJSON *obj = cJSON_ParseWithOpts(p, &end, 0);
        if (!cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            continue;
        }
        JudgeScores s = {0};
        int ok = read_assessment(obj, "similarity_assessment", &s.similarity, &s.similarity_reason, err, errcap) == 0 &&
                 read_assessment(obj, "precision_assessment", &s.precision, &s.precision_reason, err, errcap) == 0;
        cJSON_Delete(obj);
        if (ok) {
            *out = s;
            return 0;
        }
        judge_scores_free(&s);
        if (end && end > p) p = end - 1;  // skip the nested objects of a rejected candidate
    }
    return -1;
}

void judge_scores_free(JudgeScores *s) {
    free(s->similarity_reason);
    free(s->precision_reason);
    s->similarity_reason = s->precision_reason = NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

ScoreStats score_stats(const double *values, int count) {
    ScoreStats s = {0};
    double *v = ld_xmalloc(sizeof(double) * (size_t)(count + 1));
    for (int i = 0; i < count; i++) {
        if (isnan(values[i]))
            s.n_invalid++;
        else
            v[s.n++] = values[i];
    }
    if (s.n) {
        double sum = 0;
        int ge50 = 0, ge70 = 0;
        for (int i = 0; i < s.n; i++) sum += v[i], ge50 += v[i] >= 50, ge70 += v[i] >= 70;
        s.mean = sum / s.n;
        double ss = 0;
        for (int i = 0; i < s.n; i++) ss += (v[i] - s.mean) * (v[i] - s.mean);
        s.std = s.n > 1 ? sqrt(ss / (s.n - 1)) : 0;  // sample standard deviation
        qsort(v, (size_t)s.n, sizeof(double), cmp_double);
        s.median = s.n % 2 ? v[s.n / 2] : 0.5 * (v[s.n / 2 - 1] + v[s.n / 2]);
        s.share_ge50 = (double)ge50 / s.n;
        s.share_ge70 = (double)ge70 / s.n;
    }
    free(v);
    return s;
}

double score_agreement(const double *x, const double *y, int n, double *mad) {
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, ad = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]) || isnan(y[i])) continue;
        sx += x[i], sy += y[i], sxx += x[i] * x[i], syy += y[i] * y[i], sxy += x[i] * y[i], ad += fabs(x[i] - y[i]);
        k++;
    }
    *mad = k ? ad / k : NAN;
    if (k < 2) return NAN;
    double cov = sxy - sx * sy / k, vx = sxx - sx * sx / k, vy = syy - sy * sy / k;
    return vx > 0 && vy > 0 ? cov / sqrt(vx * vy) : NAN;
}
