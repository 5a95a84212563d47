// defines: requests sent through a provider's batch API instead of one call each (service.batch: true): half the
// price, answered within a day. OpenAI's Batch API: the requests as a JSONL file uploaded to /files (purpose batch),
// a batch created on it with /batches (metadata names the requests' hash), polled, then its output and error files
// read back, in any order, by custom_id (the request's cache key: no content). Anthropic's Message Batches: the
// requests in one POST /v1/messages/batches, polled on processing_status, the results read from results_url. Gemini's
// batch mode: inline requests to models/*:batchGenerateContent, a long-running operation, the responses inline. A call's
// batches (split at batch_max_requests or the provider's size limit) are all submitted, then polled together until each
// has ended. Every batch is recorded in the response cache before its first poll (and marked "submitting" before its upload), so a run killed while waiting
// attaches to its batches when rerun — found by id, or in the provider's batch list (by metadata at OpenAI, display
// name at Gemini, size and creation time at Anthropic, which keeps no metadata; every page read, and a list that
// cannot be read an error, not "never sent") — and nothing is paid twice. Replies already in the cache are not submitted; each reply is committed to the cache as it is read.
// An expired or partly failed batch keeps what finished and submits the rest again (service.batch_unanswered); a
// failed or cancelled one is a clear error. Costs are counted at the batch price (service.batch_price_factor).
#pragma once
#include "llm_client.h"

// What llm_run does when p->batch is set, after its key check and privacy scrubbing: maps[n] (or NULL) the
// scrubbed requests' placeholders, for mapping replies back. Fills *st as llm_run does.
int batch_run(const ProviderConfig *p, const ClientLimits *lim, LlmCache *cache, LlmJob *jobs, int n, JobDoneFn done, void *ctx,
              const char *key, ScrubMap *const *maps, ClientStats *st);

// One line of a batch's results: an OpenAI output or error file line ({custom_id, response: {status_code, body},
// error}) or an Anthropic results line ({custom_id, result: {type, message | error}}): the request it answers, and
// its reply or why there is none.
typedef struct {
    const char *custom_id;
    int ok;
    int cancelled;  // Anthropic: the request was canceled (its batch was cancelled)
    int permanent;  // the provider refused the request itself (a 4xx, an invalid request): sending it again cannot help
    LlmReply reply;  // ok: parsed as a synchronous reply would be (valid UTF-8, or repaired with repair_utf8)
    char why[400];  // not ok: the error, naming the batch
} BatchResult;
typedef void (*BatchResultFn)(void *ctx, BatchResult *r);
// Every line of text (modified: cut at newlines) given to fn; lines without a custom_id are skipped. Shared with
// the fuzz target.
int batch_results_parse(const ProviderConfig *p, int repair_utf8, char *text, const char *batch_id, BatchResultFn fn, void *ctx);
