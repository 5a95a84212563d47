// defines: deterministic answer metrics beside the judge, for tasks with exact answers: exact match (surrounding
// whitespace aside), normalised exact match (the same words: case, spacing and punctuation aside), ROUGE-L F1 over
// words, and chrF (character n-gram F-score, n = 1..6, beta = 2).
#pragma once

int metric_exact_match(const char *candidate, const char *reference);
int metric_normalized_exact_match(const char *candidate, const char *reference);
double metric_rouge_l(const char *candidate, const char *reference);
double metric_chrf(const char *candidate, const char *reference);
