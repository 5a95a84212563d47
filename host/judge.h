// defines: the judge's rubric (prompt text), robust parsing of a judge model's reply, and score statistics.
// Rubric (design.md §4): similarity to the reference and precision on the instruction, integers 1–100 with
// reasons, as {"similarity_assessment": {"score", "reason"}, "precision_assessment": {"score", "reason"}}.
#pragma once
#include <stddef.h>

// The judge prompt for one candidate answer (heap string).
char *judge_prompt(const char *instruction, const char *reference, const char *candidate);

typedef struct {
    double similarity, precision;
    char *similarity_reason, *precision_reason;  // heap, may be empty strings
} JudgeScores;

// Finds the rubric object anywhere in text (prose, code fences), accepts scores as numbers or numeric
// strings ("85.5", "85/100", "85%") in [1, 100]. Returns 0, or -1 with a reason in err.
int judge_parse(const char *text, JudgeScores *out, char *err, size_t errcap);
void judge_scores_free(JudgeScores *s);

typedef struct {
    int n, n_invalid;  // valid values; NaNs (answers never validly judged) counted beside, not in
    double mean, median, std, share_ge50, share_ge70;
} ScoreStats;

ScoreStats score_stats(const double *values, int count);

// Pearson correlation of x and y over the pairs where both are numbers (NaN = missing); NaN when fewer than
// two pairs or no variance. *mad gets their mean absolute difference.
double score_agreement(const double *x, const double *y, int n, double *mad);
