#include "judge_stage.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer_scores.h"
#include "util.h"

// The rubric as a JSON Schema, for providers with schema-constrained output (validated here anyway).
static const char *k_judge_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"similarity_assessment\":{\"type\":\"object\",\"properties\":{\"score\":{\"type\":\"integer\"},\"reason\":{\"type\":\"string\","
    "\"maxLength\":400}},"
    "\"required\":[\"score\",\"reason\"]},"
    "\"precision_assessment\":{\"type\":\"object\",\"properties\":{\"score\":{\"type\":\"integer\"},\"reason\":{\"type\":\"string\","
    "\"maxLength\":400}},"
    "\"required\":[\"score\",\"reason\"]}},\"required\":[\"similarity_assessment\",\"precision_assessment\"]}";

static cJSON *stats_json(const ScoreStats *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "mean", s->mean);
    cJSON_AddNumberToObject(o, "median", s->median);
    cJSON_AddNumberToObject(o, "std", s->std);
    cJSON_AddNumberToObject(o, "share_ge50", s->share_ge50);
    cJSON_AddNumberToObject(o, "share_ge70", s->share_ge70);
    cJSON_AddNumberToObject(o, "answers", s->n);
    return o;
}

int judge_prefers_itself(const JudgeConfig *cfg, const ProviderConfig *judge) {
    // with judge.method metric no model judges, so there is no preference to warn of
    return cfg->method != JUDGE_METRIC && cfg->generator_model && !strcmp(cfg->generator_model, judge->model);
}

void judge_warn_self_preference(const ProviderConfig *judge) {
    fprintf(stderr,
            "judge: warning: the judge (%s) also wrote the training data; it may prefer its own style "
            "(self-preference) — consider a different judge model\n",
            judge->model);
}

int stage_all_failed(const char *what, const ProviderConfig *p, const ClientLimits *l, const ClientStats *st, int n) {
    if (!st->all_failed) return 0;
    ld_set_error("%s: all %d requests to %s (%s, %s) failed, after up to %d attempt(s) each: %s", what, n, p->model, wire_name(p->wire),
                 p->base_url, l->max_attempts, st->first_error[0] ? st->first_error : "no reply");
    return 1;
}

int judge_run(const ProviderConfig *p, const ClientLimits *l, LlmCache *cache, const JudgeConfig *cfg, const Records *test,
              const char *answers_path, const char *out_jsonl, const char *metrics_path, JudgeSummary *sum) {
    memset(sum, 0, sizeof *sum);
    Answer *ans;
    int na;
    if (answers_read(answers_path, test, &ans, &na)) return -1;
    int M = cfg->judgments_per_answer, total = na * M;
    JudgeScores *scores = ld_xcalloc((size_t)total, sizeof(JudgeScores));
    int *valid = ld_xcalloc((size_t)total, sizeof(int)), *tries = ld_xcalloc((size_t)total, sizeof(int));
    char **errors = ld_xcalloc((size_t)total, sizeof(char *));
    int rc = 0, replied = 0;  // replied: judge requests the service answered (usable or not)
    // Rounds of asking: every judgment not yet valid is asked again, with a retry marker so the request differs.
    for (int attempt = 0; attempt <= cfg->max_rejudge && rc == 0; attempt++) {
        int *which = ld_xmalloc(sizeof(int) * (size_t)(total + 1)), nj = 0;
        for (int k = 0; k < total; k++)
            if (!valid[k] && tries[k] < (1 << 20) && !ans[k / M].error) which[nj++] = k;
        if (!nj) {
            free(which);
            break;
        }
        LlmJob *jobs = ld_xcalloc((size_t)nj, sizeof(LlmJob));
        LlmMessage *msgs = ld_xcalloc((size_t)nj, sizeof(LlmMessage));
        char **prompts = ld_xcalloc((size_t)nj, sizeof(char *));
        for (int q = 0; q < nj; q++) {
            int k = which[q], a = k / M, m = k % M;
            const Record *t = &test->v[ans[a].test_index];
            char *base = judge_prompt(t->instruction, t->response ? t->response : "", ans[a].text);
            size_t n = strlen(base) + 96;
            prompts[q] = ld_xmalloc(n);
            // The judgment number makes the M judgments distinct requests (providers without a seed
            // parameter would otherwise be answered once, from the cache, M times).
            if (attempt)
                snprintf(prompts[q], n, "%s\n\n(judgment %d; retry %d: the previous reply was unusable)", base, m + 1, attempt);
            else
                snprintf(prompts[q], n, "%s\n\n(judgment %d)", base, m + 1);
            free(base);
            msgs[q] = (LlmMessage){"user", prompts[q]};
            jobs[q].req = (LlmRequest){.messages = &msgs[q], .n_messages = 1, .json_mode = 1, .json_schema = k_judge_schema};
        }
        ClientStats st = {0};
        ClientLimits next = client_limits_continue(l, &sum->client);  // the passes share one budget and deadline
        int failed = llm_run(p, &next, cache, jobs, nj, NULL, NULL, &st);
        client_stats_add(&sum->client, &st);
        // nothing answered at all: asking again (the passes below) would only repeat the same failure
        if (failed || (!replied && stage_all_failed("judge", p, l, &st, nj))) {
            rc = -1;
        } else {
            for (int q = 0; q < nj; q++) {
                replied += jobs[q].status == JOB_OK;
                int k = which[q];
                tries[k]++;
                free(errors[k]);
                errors[k] = NULL;
                char err[256];
                if (jobs[q].status != JOB_OK) {
                    errors[k] = ld_xstrdup(jobs[q].error ? jobs[q].error : "request failed");
                    if (jobs[q].status == JOB_SKIPPED_BUDGET) tries[k] = 1 << 20;  // no point asking again
                } else if (judge_parse(jobs[q].reply.text, &scores[k], err, sizeof err)) {
                    errors[k] = ld_xstrdup(err);
                } else {
                    valid[k] = 1;
                }
            }
        }
        for (int q = 0; q < nj; q++) {
            llm_job_clear(&jobs[q]);
            free(prompts[q]);
        }
        free(jobs), free(msgs), free(prompts), free(which);
        int n_valid = 0;
        for (int k = 0; k < total; k++) n_valid += valid[k];
        if (rc == 0) fprintf(stderr, "judge: pass %d: %d judgments asked, %d/%d valid so far\n", attempt + 1, nj, n_valid, total);
    }
    if (rc == 0) {
        cJSON **lines = ld_xmalloc(sizeof(cJSON *) * (size_t)(total + 1));
        double *sim = ld_xmalloc(sizeof(double) * (size_t)na), *prec = ld_xmalloc(sizeof(double) * (size_t)na);
        for (int a = 0; a < na; a++) {
            double s = 0, pr = 0;
            int nv = 0;
            for (int m = 0; m < M; m++) {
                int k = a * M + m;
                cJSON *j = cJSON_CreateObject();
                cJSON_AddStringToObject(j, "id", ans[a].id);
                cJSON_AddNumberToObject(j, "sample", ans[a].sample);
                cJSON_AddNumberToObject(j, "judgment", m);
                cJSON_AddBoolToObject(j, "valid", valid[k]);
                cJSON_AddNumberToObject(j, "asked", tries[k] > 1000 ? 1 : tries[k]);
                if (ans[a].error) {
                    char why[512];
                    snprintf(why, sizeof why, "not judged: the answer is an error (%s)", ans[a].error);
                    cJSON_AddStringToObject(j, "error", why);
                } else if (valid[k]) {
                    cJSON_AddNumberToObject(j, "similarity", scores[k].similarity);
                    cJSON_AddNumberToObject(j, "precision", scores[k].precision);
                    cJSON_AddStringToObject(j, "similarity_reason", scores[k].similarity_reason);
                    cJSON_AddStringToObject(j, "precision_reason", scores[k].precision_reason);
                    s += scores[k].similarity, pr += scores[k].precision, nv++;
                } else {
                    cJSON_AddStringToObject(j, "error", errors[k] ? errors[k] : "not judged");
                    sum->invalid_judgments++;
                }
                lines[k] = j;
            }
            sum->failed_answers += ans[a].error != NULL;
            sim[a] = nv ? s / nv : NAN;
            prec[a] = nv ? pr / nv : NAN;
        }
        sum->answers = na;
        sum->judgments = total;
        sum->answer_similarity = ld_xmalloc(sizeof(double) * (size_t)na);
        sum->answer_precision = ld_xmalloc(sizeof(double) * (size_t)na);
        memcpy(sum->answer_similarity, sim, sizeof(double) * (size_t)na);
        memcpy(sum->answer_precision, prec, sizeof(double) * (size_t)na);
        sum->similarity = score_stats(sim, na);
        sum->precision = score_stats(prec, na);
        sum->unjudged_answers = sum->similarity.n_invalid;
        cJSON *mj = cJSON_CreateObject();
        cJSON_AddStringToObject(mj, "judge_model", p->model);
        cJSON_AddNumberToObject(mj, "answers", na);
        cJSON_AddNumberToObject(mj, "unjudged_answers", sum->unjudged_answers);
        cJSON_AddNumberToObject(mj, "failed_answers", sum->failed_answers);
        cJSON_AddNumberToObject(mj, "judgments", total);
        cJSON_AddNumberToObject(mj, "invalid_judgments", sum->invalid_judgments);
        cJSON_AddItemToObject(mj, "similarity", stats_json(&sum->similarity));
        cJSON_AddItemToObject(mj, "precision", stats_json(&sum->precision));
        cJSON_AddNumberToObject(mj, "prompt_tokens", (double)sum->client.prompt_tokens);
        cJSON_AddNumberToObject(mj, "completion_tokens", (double)sum->client.completion_tokens);
        cJSON_AddNumberToObject(mj, "cost_usd", sum->client.cost_usd);
        cJSON *warn = cJSON_AddArrayToObject(mj, "warnings");
        if (judge_prefers_itself(cfg, p))
            cJSON_AddItemToArray(warn, cJSON_CreateString("self-preference: the judge model also generated the training data"));
        if (jsonl_write_atomic(out_jsonl, lines, total) || jsonl_write_atomic(metrics_path, &mj, 1)) rc = -1;
        cJSON_Delete(mj);
        for (int k = 0; k < total; k++) cJSON_Delete(lines[k]);
        free(lines), free(sim), free(prec);
    }
    for (int k = 0; k < total; k++) {
        judge_scores_free(&scores[k]);
        free(errors[k]);
    }
    answers_free(ans, na);
    free(scores), free(valid), free(tries), free(errors);
    return rc;
}

void judge_summary_free(JudgeSummary *s) {
    free(s->answer_similarity);
    free(s->answer_precision);
    s->answer_similarity = s->answer_precision = NULL;
}

int judge_combine(const JudgeSummary *per, const char *const *models, int n_judges, const char *metrics_path, JudgeSummary *c) {
    memset(c, 0, sizeof *c);
    int na = per[0].answers;
    double *sim = ld_xmalloc(sizeof(double) * (size_t)na), *prec = ld_xmalloc(sizeof(double) * (size_t)na);
    for (int a = 0; a < na; a++) {  // an answer's score: the mean over the judges that judged it
        double s = 0, p = 0;
        int k = 0;
        for (int j = 0; j < n_judges; j++)
            if (!isnan(per[j].answer_similarity[a])) s += per[j].answer_similarity[a], p += per[j].answer_precision[a], k++;
        sim[a] = k ? s / k : NAN;
        prec[a] = k ? p / k : NAN;
    }
    c->answers = na;
    c->similarity = score_stats(sim, na);
    c->precision = score_stats(prec, na);
    c->unjudged_answers = c->similarity.n_invalid;
    c->failed_answers = per[0].failed_answers;  // the same answers for every judge
    c->answer_similarity = sim, c->answer_precision = prec;  // the means across judges, for the per-answer scores
    cJSON *mj = cJSON_CreateObject(), *judges = cJSON_AddArrayToObject(mj, "judges");
    for (int j = 0; j < n_judges; j++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", models[j]);
        cJSON_AddItemToObject(o, "similarity", stats_json(&per[j].similarity));
        cJSON_AddItemToObject(o, "precision", stats_json(&per[j].precision));
        cJSON_AddNumberToObject(o, "unjudged_answers", per[j].unjudged_answers);
        cJSON_AddNumberToObject(o, "cost_usd", per[j].client.cost_usd);
        cJSON_AddItemToArray(judges, o);
        c->client.cost_usd += per[j].client.cost_usd;
        c->client.new_cost_usd += per[j].client.new_cost_usd;
    }
    double r_s = 0, r_p = 0, mad_s = 0, mad_p = 0;
    int pairs = 0;
    for (int i = 0; i < n_judges; i++)
        for (int j = i + 1; j < n_judges; j++) {
            double ms, mp, rs = score_agreement(per[i].answer_similarity, per[j].answer_similarity, na, &ms);
            double rp = score_agreement(per[i].answer_precision, per[j].answer_precision, na, &mp);
            r_s += rs, r_p += rp, mad_s += ms, mad_p += mp, pairs++;
        }
    cJSON *ag = cJSON_AddObjectToObject(mj, "agreement");
    double vals[4] = {r_s / pairs, r_p / pairs, mad_s / pairs, mad_p / pairs};
    const char *names[4] = {"similarity_pearson", "precision_pearson", "similarity_mean_abs_diff", "precision_mean_abs_diff"};
    for (int k = 0; k < 4; k++) {
        if (isnan(vals[k]))
            cJSON_AddNullToObject(ag, names[k]);  // too few answers, or no spread
        else
            cJSON_AddNumberToObject(ag, names[k], vals[k]);
    }
    cJSON_AddNumberToObject(mj, "answers", na);
    cJSON_AddNumberToObject(mj, "unjudged_answers", c->unjudged_answers);
    cJSON_AddItemToObject(mj, "similarity", stats_json(&c->similarity));
    cJSON_AddItemToObject(mj, "precision", stats_json(&c->precision));
    cJSON_AddNumberToObject(mj, "cost_usd", c->client.cost_usd);
    int rc = jsonl_write_atomic(metrics_path, &mj, 1);
    cJSON_Delete(mj);
    return rc;
}

char *judge_file_for(const char *path, int judge) {
    const char *base = strrchr(path, '/'), *dot = strrchr(base ? base : path, '.');
    size_t stem = dot ? (size_t)(dot - path) : strlen(path), n = strlen(path) + 16;
    char *out = ld_xmalloc(n);
    snprintf(out, n, "%.*s-%d%s", (int)stem, path, judge, dot ? dot : "");
    return out;
}

int judge_all(const ProviderConfig *judges, const ClientLimits *limits, int n_judges, LlmCache *cache, const JudgeConfig *cfg,
              const Records *test, const char *answers, const char *judge_path, const char *scores_path, const char *metrics_path,
              JudgeSummary *per, JudgeSummary *out, ClientStats *usage) {
    memset(out, 0, sizeof *out);
    if (cfg->method == JUDGE_METRIC) return answer_scores_write(cfg, test, answers, NULL, NULL, scores_path, metrics_path, out);
    const char **models = ld_xmalloc(sizeof(char *) * (size_t)n_judges);
    int rc = 0;
    for (int j = 0; j < n_judges && !rc; j++) {
        char *jp = n_judges > 1 ? judge_file_for(judge_path, j) : ld_xstrdup(judge_path);
        char *mp = n_judges > 1 ? judge_file_for(metrics_path, j) : ld_xstrdup(metrics_path);
        rc = judge_run(&judges[j], &limits[j], cache, cfg, test, answers, jp, mp, &per[j]);
        free(jp), free(mp);
        if (usage) client_stats_add(usage, &per[j].client);
        models[j] = judges[j].model;
    }
    if (!rc && n_judges == 1) {
        *out = per[0];
        memset(&per[0], 0, sizeof per[0]);
    } else if (!rc) {
        rc = judge_combine(per, models, n_judges, metrics_path, out);
        for (int j = 0; j < n_judges; j++) out->judgments += per[j].judgments, out->invalid_judgments += per[j].invalid_judgments;
    }
    free(models);
    char *first = n_judges > 1 ? judge_file_for(judge_path, 0) : ld_xstrdup(judge_path);  // the critiques' source
    if (!rc) rc = answer_scores_write(cfg, test, answers, out, first, scores_path, metrics_path, out);
    free(first);
    return rc;
}
