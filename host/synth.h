// defines: the synthesis stage (design.md §1, §4) — per call one seed pair, sampled without replacement
// within a round, shown to the service LLM with the task, which returns N new pairs in the JSON contract
// {"contents": [{"instruction", "response"}]}; each pair is validated, deduplicated (exact and MinHash
// near-duplicates) against itself and all earlier data, and decontaminated against the test split. Every
// dropped pair is written with its reason. Outputs are assembled in call order from the replies, so a rerun
// after a crash (answered from the response cache) writes the same records.
#pragma once
#include "llm_client.h"
#include "records.h"

typedef struct {
    const char *task;  // what the task is, in words
    int round, calls, pairs_per_call;
    unsigned seed;
    int max_instruction_chars, max_response_chars;
    double dedup_threshold;  // shingle Jaccard for near-duplicates
    int decontam_ngram;
    double decontam_threshold;  // share of a pair's n-grams found in one test record
    int max_reask;  // re-asks (with a marker, so not the cached reply) for a reply off the contract
} SynthConfig;

typedef struct {
    int calls_ok, calls_failed, returned, kept, invalid, exact_dup, near_dup, contaminated;
    int reasked;  // requests asked again because the reply broke the {"contents"} contract
    ClientStats client;
} SynthSummary;

// seeds: the training seeds; prior: earlier data (may be NULL/empty); test: the held-out split.
int synth_run(const ProviderConfig *p, const ClientLimits *l, LlmCache *cache, const SynthConfig *cfg, const Records *seeds,
              const Records *prior, int n_prior, const Records *test, const char *out_path, const char *dropped_path, SynthSummary *sum);
// The prompt for one call (heap), shared with tests; reask > 0 adds the retry marker.
char *synth_prompt(const SynthConfig *cfg, const Record *seed, int call, int reask);
