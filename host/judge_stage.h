// defines: the judge stage — K candidate answers per test prompt, each judged M times with the rubric of
// host/judge.h; unusable replies (no JSON, scores out of range) are asked again up to a limit; an answer
// that never gets a valid judgment is recorded as such and counted beside, not in, the aggregates. Writes
// every judgment (JSONL) and the round's metrics (JSON) with the deterministic metrics beside the judge's.
#pragma once
#include "judge.h"
#include "llm_client.h"
#include "pass_rule.h"
#include "records.h"
#include "task_check.h"

typedef struct {
    int judgments_per_answer;  // M
    int max_rejudge;  // extra asks for one judgment whose replies were unusable
    double threshold;  // the default pass rule: mean similarity and mean precision >= threshold
    const char *generator_model;  // the model that wrote the training data, for the self-preference warning
    JudgeMethod method;  // llm: the judge is asked; metric: only the metrics and checks; both
    const PassRule *rule;  // judge.pass
    const TaskCheck *check;  // task.check (may configure nothing)
} JudgeConfig;

typedef struct {
    ScoreStats similarity, precision;
    int answers, unjudged_answers, judgments, invalid_judgments;
    int failed_answers;  // answers that are errors (a request that failed): never judged, counted as unjudged
    double measure[MEASURE_COUNT];  // the share of answers for each metric and check measure (NaN: not computed)
    int pass;  // the pass rule held
    ClientStats client;
    double *answer_similarity, *answer_precision;  // [answers] per-answer means (NaN when never judged), heap
} JudgeSummary;

void judge_summary_free(JudgeSummary *s);
// Several judges: per-judge results, their agreement (Pearson r and mean absolute difference of per-answer
// scores, averaged over judge pairs) and the pass rule on the per-answer means across judges -> metrics_path.
int judge_combine(const JudgeSummary *per, const char *const *models, int n_judges, const char *metrics_path, JudgeSummary *combined);

// answers: JSONL lines {"id", "sample", "text"} (llamaduo generate --input test --samples K); a line with
// "error" (an answer that failed) is not judged. A service that answers none of the judge's requests fails the
// stage with its error rather than asking again.
int judge_run(const ProviderConfig *p, const ClientLimits *l, LlmCache *cache, const JudgeConfig *cfg, const Records *test,
              const char *answers_path, const char *out_jsonl, const char *metrics_path, JudgeSummary *sum);

// A judge's own file when there are several: "-N" before the extension (judge.jsonl -> judge-0.jsonl,
// data/ceiling.metrics.json -> data/ceiling.metrics-0.json). Heap.
char *judge_file_for(const char *path, int judge);
// Every judge over the answers. One judge writes judge_path and metrics_path; several write their own files
// (judge_file_for) and the combination to metrics_path. per[n_judges] gets each judge's summary (the caller frees
// them; with one judge it is moved to *out). Each call's requests are added to *usage (may be NULL), sent
// whether the judge then failed or not. With judge.method metric no judge is asked. Then every measure and the
// pass rule (answer_scores.h): per answer to scores_path, aggregated into metrics_path.
int judge_all(const ProviderConfig *judges, const ClientLimits *limits, int n_judges, LlmCache *cache, const JudgeConfig *cfg,
              const Records *test, const char *answers, const char *judge_path, const char *scores_path, const char *metrics_path,
              JudgeSummary *per, JudgeSummary *out, ClientStats *usage);

// 1 when this judge also wrote the training data: it may prefer its own style (self-preference).
int judge_prefers_itself(const JudgeConfig *cfg, const ProviderConfig *judge);
// The console warning for that (once per run or command is enough: it is a fact about the config).
void judge_warn_self_preference(const ProviderConfig *judge);
// When not one of a stage's n requests succeeded and all failed (nothing listening, a wrong URL or key, ...): an
// error naming what asked, the service, its URL and the client's first error, and 1. Else 0.
int stage_all_failed(const char *what, const ProviderConfig *p, const ClientLimits *l, const ClientStats *st, int n);
