// defines: the synthesis stage (design.md §1, §4) — per call one seed pair, sampled without replacement
// within a round, shown to the service LLM with the task, which returns N new pairs in the JSON contract
// {"contents": [{"instruction", "response"}]}; each pair is validated, deduplicated (exact and MinHash
// near-duplicates) against itself and all earlier data, and decontaminated against the test split. Every
// dropped pair is written with its reason. Outputs are assembled in call order from the replies, so a rerun
// after a crash (answered from the response cache) writes the same records.
// Targeted (synth.strategy: targeted): a share of the calls cycles through the training records the student answered
// wrong in the last round's probe, worst first, and each such call shows the student's answer and what was wrong
// with it, asking for pairs that teach exactly that; the other calls are drawn uniformly. With a task check that needs no reference, every pair is checked
// before it joins the data, and the wrong ones are dropped with the reason; a checker that fails stops the stage.
#pragma once
#include "llm_client.h"
#include "records.h"
#include "task_check.h"

// What the probe found for one seed (synth targets: one per seed, in seed order).
typedef struct {
    int probed;  // the seed was in the probe
    int failed;  // its answer (one of its samples) did not pass the rule on its own: a call may aim at it
    double score;  // its answer's score in 0..1 (the worst of its samples), for the order
    const char *answer, *critique;  // the student's answer and what was wrong with it
} SynthTarget;

typedef struct {
    const char *task;  // what the task is, in words
    int round, calls, pairs_per_call;
    unsigned seed;
    int max_instruction_chars, max_response_chars;
    double dedup_threshold;  // shingle Jaccard for near-duplicates
    int decontam_ngram;
    double decontam_threshold;  // share of a pair's n-grams found in one test record
    int max_reask;  // re-asks (with a marker, so not the cached reply) for a reply off the contract
    const char *strategy;  // targeted | uniform (synth.strategy)
    const SynthTarget *targets;  // [seeds] from the last probe, or NULL: uniform
    double target_share;  // of the calls, the share aimed at the probe's failures (synth.target_share)
    const TaskCheck *check;  // verifies pairs when it needs no reference (may be NULL)
    int surrogates;  // privacy placeholders in kept pairs become realistic stand-ins (privacy.surrogates)
    const Scrubber *privacy;  // when set, the critique a pair's lineage keeps is stored scrubbed
} SynthConfig;

typedef struct {
    int calls_ok, calls_failed, returned, kept, invalid, exact_dup, near_dup, contaminated;
    int reasked;  // requests asked again because the reply broke the {"contents"} contract
    int targeted_calls;  // calls that showed a probe answer and its critique
    int failed_check;  // pairs the task's checker refused
    ClientStats client;
} SynthSummary;

// seeds: the training seeds; prior: earlier data (may be NULL/empty); test: the held-out split.
int synth_run(const ProviderConfig *p, const ClientLimits *l, LlmCache *cache, const SynthConfig *cfg, const Records *seeds,
              const Records *prior, int n_prior, const Records *test, const char *out_path, const char *dropped_path, SynthSummary *sum);
// The prompt for one call (heap), shared with tests; reask > 0 adds the retry marker; target (may be NULL) makes it a
// targeted prompt when the probe found the seed's answer wanting.
char *synth_prompt(const SynthConfig *cfg, const Record *seed, const SynthTarget *target, int call, int reask);
// The seed each of the round's cfg->calls calls aims at: aim[c] a seed index (the probe item it shows), or -1 for a
// uniform call. The draw synth_run makes, for the ledger and the report; returns the number of targeted calls.
int synth_aims(const SynthConfig *cfg, int n_seeds, int *aim);
// 1 when a call may aim at this seed: probed, and its answer failed the rule on its own.
int synth_is_targeted(const SynthTarget *t);
