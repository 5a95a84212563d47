// defines: batched generation with a KV cache. A GenEngine decodes many sequences together, each with its own
// settings (length, sampler, stops, JSON constraint); sequences join between decode steps as slots free up
// (continuous batching) and can be cancelled. generate() runs a fixed list of requests through one engine.
#pragma once
#include "json_constraint.h"
#include "model.h"
#include "sampler.h"

typedef enum { FINISH_NONE, FINISH_STOP, FINISH_LENGTH, FINISH_CANCELLED } FinishReason;

typedef struct GenSeq GenSeq;
struct GenSeq {
    // settings
    const int *prompt;
    int n_prompt;
    int max_new_tokens;
    SamplerParams sampler;
    uint64_t seed_stream;  // RNG stream of this sequence (the sample index, say)
    const char *const *stop_strings;  // generation ends before any of these (not included in the text)
    int n_stop_strings;
    const int *stop_ids;  // EOS / end-of-turn tokens (not included in the text)
    int n_stop_ids;
    JsonMatcher *json;  // constrained decoding: only tokens keeping a schema-valid JSON prefix
    // Text bytes as they become final (held back while they could start a stop string), valid UTF-8.
    void (*on_text)(void *ctx, GenSeq *s, const char *bytes, int n);
    void (*on_done)(void *ctx, GenSeq *s);  // the sequence finished (outputs set); its slot is free again
    void *ctx;
    // outputs
    int *tokens;  // generated ids (heap)
    int n_tokens;
    char *text;  // generated text, stop strings cut (heap, UTF-8 repaired)
    FinishReason finish;
    int slot;  // engine's
};

typedef struct GenEngine GenEngine;
// n_slots sequences of up to ctx_len tokens (prompt + generated) each; prompts are fed prefill_chunk tokens
// per forward call; on the GPU (forward_gpu.h) when use_gpu, its weights in bf16 (fp32 accumulation) when
// gpu_bf16, else fp32. NULL with an error when the KV cache cannot be allocated or the GPU cannot be used.
GenEngine *gen_engine_new(const Model *m, int n_slots, int ctx_len, int prefill_chunk, int use_gpu, int gpu_bf16);
void gen_engine_free(GenEngine *e);
int gen_engine_free_slots(const GenEngine *e);
int gen_engine_active(const GenEngine *e);
// Admits s into a free slot. -1 with an error when no slot is free, the prompt is empty or prompt + max_new_tokens
// exceeds the context. A sequence with max_new_tokens 0 finishes at once (on_done called before this returns).
int gen_engine_add(GenEngine *e, GenSeq *s);
// One forward pass over every admitted sequence (a decode token each, plus prompt chunks), then sampling.
// Returns the number of tokens fed (0 only when no sequence is admitted), or -1 with an error.
int gen_engine_step(GenEngine *e);
// Stops s now (finish = FINISH_CANCELLED, text so far); its slot is free again. on_done is not called.
void gen_engine_cancel(GenEngine *e, GenSeq *s);
void gen_seq_free(GenSeq *s);  // the outputs

// ---- a fixed list of requests sharing settings -------------------------------------------------------------

typedef struct {
    int max_new_tokens;
    SamplerParams sampler;
    const char *const *stop_strings;
    int n_stop_strings;
    const int *stop_ids;
    int n_stop_ids;
    int max_batch;  // sequences decoded at once
    int prefill_chunk;  // prompt tokens per forward call
    int use_gpu;  // decode on the CUDA device
    int gpu_bf16;  // with its weights in bf16 (mixed precision) rather than fp32
    // Called each time a request finishes: requests done so far, their generated tokens so far.
    void (*progress)(void *ctx, int done, int total, long tokens);
    void *progress_ctx;
} GenParams;

typedef struct {
    const int *prompt;  // input
    int n_prompt;
    uint64_t seed_stream;
    // outputs
    int *tokens;
    int n_tokens;
    char *text;
    FinishReason finish;
} GenRequest;

typedef void (*GenStreamFn)(void *ctx, int request, const char *bytes, int n);

GenParams gen_defaults(void);
// Runs all requests. Returns 0, or -1 with an error (e.g. a prompt longer than the context).
int generate(const Model *m, GenRequest *reqs, int n, const GenParams *p, GenStreamFn stream, void *ctx);
void gen_request_free(GenRequest *r);
// The stop-token ids a model's tokenizer declares: EOS plus known end-of-turn tokens present in its vocab.
int gen_default_stop_ids(const Model *m, int *ids, int cap);
