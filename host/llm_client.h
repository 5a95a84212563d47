// defines: the service-LLM client — many requests in flight over libcurl's multi interface, within limits on
// concurrency, requests and tokens per rate window (sliding window: never exceeded; requests paced evenly
// through it), with retries
// (exponential backoff with full jitter, Retry-After honoured) on 429, 5xx, timeouts, connection errors and
// unusable replies; 4xx otherwise fails fast with the provider's message. Every reply's usage and cost are
// recorded; a budget cap stops new requests cleanly; the cache answers repeated requests for free.
#pragma once
#include "cache.h"
#include "provider.h"

typedef struct {
    int concurrency;       // requests in flight at once
    int rpm, tpm;          // requests / tokens per window (0 = unlimited); tokens are estimated before sending
    double window_s;       // the rate window (60 s for per-minute limits)
    int max_attempts;      // per request, first try included
    double timeout_s;      // per attempt
    double backoff_base_s, backoff_max_s;
    double budget_usd;     // stop issuing new requests once spent >= budget (0 = no cap)
    int use_cache;         // read the cache (replies are always written)
} ClientLimits;

typedef enum { JOB_PENDING, JOB_OK, JOB_FAILED, JOB_SKIPPED_BUDGET } JobStatus;

typedef struct {
    LlmRequest req;  // input
    void *user;      // the caller's
    // results
    JobStatus status;
    LlmReply reply;
    int cached, attempts;
    double cost;
    char *error;  // last error (heap) when failed; also the reason of the last retry
} LlmJob;

typedef struct {
    long requests_sent, retries, cache_hits, failures, skipped_budget;
    long prompt_tokens, completion_tokens;          // of every reply, cached ones included
    long new_prompt_tokens, new_completion_tokens;  // of the replies paid for in this call
    double cost_usd;      // of every reply, cached ones included (what the results cost)
    double new_cost_usd;  // paid in this call
    double wall_s;
    int busiest_window;          // most requests sent within any one rate window
    long busiest_window_tokens;  // most (estimated) tokens sent within any one rate window
} ClientStats;

ClientLimits client_limits_default(void);
// Called on the calling thread as each job finishes (ok, failed or skipped), in completion order.
typedef void (*JobDoneFn)(void *ctx, LlmJob *job);
// Runs every job to a result or a recorded failure. -1 (nothing sent) when the key's variable is unset.
// *stats is always written (zeroed first), whatever the return.
int llm_run(const ProviderConfig *p, const ClientLimits *lim, LlmCache *cache, LlmJob *jobs, int n, JobDoneFn done,
            void *ctx, ClientStats *stats);
void llm_job_clear(LlmJob *j);
