// defines: deduplication of training records — exact after normalisation, and near-duplicate by Jaccard
// similarity of word shingles, with MinHash LSH to find candidates and the exact Jaccard deciding.
#pragma once
#include <stdint.h>

typedef struct Dedup Dedup;

typedef enum { DEDUP_UNIQUE, DEDUP_EXACT, DEDUP_NEAR } DedupVerdict;

typedef struct {
    DedupVerdict verdict;
    int match_id;  // id of the earlier record it duplicates (-1 when unique)
    double jaccard;  // shingle Jaccard with that record (1 for exact)
} DedupResult;

// threshold: Jaccard at or above which a record is a near-duplicate (0 < t <= 1); shingle: words per
// shingle (e.g. 3); num_perm: MinHash permutations (e.g. 128).
Dedup *dedup_new(double threshold, int shingle, int num_perm);
void dedup_free(Dedup *d);
// Compares text with every record added so far (nothing is added).
DedupResult dedup_check(Dedup *d, const char *text);
// Adds a record (its text and the caller's id) to the index.
void dedup_add(Dedup *d, const char *text, int id);
