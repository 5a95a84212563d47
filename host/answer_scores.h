// defines: every measure of a set of answers in one place — the reference metrics, the task's checks and (when a
// judge ran) the judge's per-answer means — written per answer (scores.jsonl: each measure, the answer's score in
// 0..1 on the pass rule's measures, and a critique saying what was wrong with it), aggregated into the stage's
// metrics.json beside the judge's statistics, with the pass rule evaluated there condition by condition.
#pragma once
#include "judge_stage.h"

typedef struct {
    char *id;
    int sample;
    char *text;
    int test_index;
    char *error;  // the answer itself failed (heap), or NULL
} Answer;

// answers: JSONL {"id", "sample", "text"} or {"id", "error"}; each id must be in test.
int answers_read(const char *path, const Records *test, Answer **out, int *n);
void answers_free(Answer *a, int n);

// judged: the judge's summary (its per-answer means), or NULL when no judge ran (judge.method metric);
// judge_jsonl: the judgments (the critiques' source), or NULL. metrics_path: read when a judge wrote it, then
// rewritten with the measures, the rule and "pass". sum gets measure[] and pass.
int answer_scores_write(const JudgeConfig *cfg, const Records *test, const char *answers_path, const JudgeSummary *judged,
                        const char *judge_jsonl, const char *scores_path, const char *metrics_path, JudgeSummary *sum);
