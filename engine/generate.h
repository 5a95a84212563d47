// defines: batched generation with a KV cache — many prompts of different lengths decoded together, new
// prompts joining as others finish (continuous batching), stop tokens and stop strings, streaming.
#pragma once
#include "model.h"
#include "sampler.h"

typedef enum { FINISH_NONE, FINISH_STOP, FINISH_LENGTH } FinishReason;

typedef struct {
    int max_new_tokens;
    SamplerParams sampler;
    const char *const *stop_strings;  // generation ends before any of these (not included in the text)
    int n_stop_strings;
    const int *stop_ids;  // EOS / end-of-turn tokens (not included in the text)
    int n_stop_ids;
    int max_batch;     // sequences decoded at once
    int prefill_chunk; // prompt tokens per forward call
    // Called each time a request finishes: requests done so far, their generated tokens so far.
    void (*progress)(void *ctx, int done, int total, long tokens);
    void *progress_ctx;
} GenParams;

typedef struct {
    const int *prompt;  // input
    int n_prompt;
    uint64_t seed_stream;  // RNG stream of this request (the sample index, say)
    // outputs
    int *tokens;  // generated ids (heap)
    int n_tokens;
    char *text;   // generated text, stop strings cut (heap, UTF-8 repaired)
    FinishReason finish;
} GenRequest;

// Called with text bytes as they become final (held back while they could start a stop string).
typedef void (*GenStreamFn)(void *ctx, int request, const char *bytes, int n);

GenParams gen_defaults(void);
// Runs all requests. Returns 0, or -1 with an error (e.g. a prompt longer than the context).
int generate(const Model *m, GenRequest *reqs, int n, const GenParams *p, GenStreamFn stream, void *ctx);
void gen_request_free(GenRequest *r);
// The stop-token ids a model's tokenizer declares: EOS plus known end-of-turn tokens present in its vocab.
int gen_default_stop_ids(const Model *m, int *ids, int cap);
