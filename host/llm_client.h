// defines: the service-LLM client — many requests in flight over libcurl's multi interface, within limits on
// concurrency, requests and tokens per rate window (sliding window: never exceeded; requests paced evenly
// through it), with retries
// (exponential backoff with full jitter, Retry-After honoured up to a cap) on 429, 5xx, timeouts, connection
// errors and unusable replies; 4xx otherwise fails fast with the provider's message. Every reply's usage and
// cost are recorded, unusable ones included, and checked (a server's implausible usage is replaced by an
// estimate); replies are size-capped and must be valid UTF-8; a budget cap stops new requests cleanly; the
// cache answers repeated requests for free and each reply is committed to it as soon as it arrives. When
// every request fails the same way the client says so on one line and gives up after one request's attempts.
#pragma once
#include "cache.h"
#include "privacy.h"
#include "provider.h"

typedef struct {
    int concurrency;  // requests in flight at once
    int rpm, tpm;  // requests / tokens per window (0 = unlimited); tokens are estimated before sending
    double window_s;  // the rate window (60 s for per-minute limits)
    int max_attempts;  // per request, first try included
    double timeout_s;  // per attempt
    double backoff_base_s, backoff_max_s;
    double budget_usd;  // stop issuing new requests once spent + in flight >= budget (0 = no cap)
    int use_cache;  // read the cache (replies are always written)
    double retry_after_max_s;  // the longest Retry-After waited for silently
    int retry_after_wait;  // past that: 0 = the request fails, 1 = wait (said on the console) within the deadline
    double deadline_s;  // no attempt starts or is waited for past this many seconds of one llm_run (0 = none)
    size_t max_reply_bytes;  // a longer reply body is aborted mid-transfer
    int repair_utf8;  // invalid UTF-8 in a reply: 0 = the request fails ("invalid UTF-8"), 1 = U+FFFD
    double spent_before_usd, elapsed_before_s;  // what earlier calls of the same stage used of budget and deadline
    const Scrubber *privacy;  // when set, every user and assistant message is scrubbed before it leaves (privacy.h)
    // with service.batch: told each batch's id and state as it changes (submitted before its first poll, then ended)
    void (*on_batch)(void *ctx, const char *batch_id, const char *state);
    void *on_batch_ctx;
} ClientLimits;

typedef enum { JOB_PENDING, JOB_OK, JOB_FAILED, JOB_SKIPPED_BUDGET } JobStatus;

typedef struct {
    LlmRequest req;  // input
    void *user;  // the caller's
    // results
    JobStatus status;
    LlmReply reply;
    int cached, attempts;
    double cost;  // of the reply used (for a cached one: what it cost when it was paid for)
    double unusable_cost;  // paid in this call for replies that could not be used
    char *error;  // last error (heap) when failed; also the reason of the last retry
} LlmJob;

typedef struct {
    long requests_sent, retries, cache_hits, failures, skipped_budget;
    long prompt_tokens, completion_tokens;  // of every reply, cached ones included
    long new_prompt_tokens, new_completion_tokens;  // of the replies paid for in this call
    double cost_usd;  // of every reply, cached ones included (what the results cost)
    double new_cost_usd;  // paid in this call, unusable replies included
    double unusable_cost_usd;  // of those, for replies that could not be used (not JSON, no text, too large, ...)
    long usage_estimated;  // replies whose usage was missing or implausible: tokens estimated from sizes
    long utf8_repaired;  // replies whose invalid UTF-8 was replaced (repair_utf8)
    int all_failed;  // no request succeeded and every one that ended failed
    int gave_up;  // every request failed the same way, so the rest were not sent
    char first_error[256];  // the first failure (with all_failed: what the service is doing)
    double commit_lag_max_s;  // the longest time from a reply's arrival to its commit to the cache
    double wall_s;
    long scrubbed[PII_KINDS];  // finds replaced by placeholders, by kind, over every request of the call
    int busiest_window;  // most requests sent within any one rate window
    long busiest_window_tokens;  // most (estimated) tokens sent within any one rate window
} ClientStats;

ClientLimits client_limits_default(void);
// Called on the calling thread as each job finishes (ok, failed or skipped), in completion order.
typedef void (*JobDoneFn)(void *ctx, LlmJob *job);
// Runs every job to a result or a recorded failure. -1 (nothing sent) when the key's variable is unset, or when a
// system message matches a privacy pattern (system messages are not rewritten: the request is refused whole).
// *stats is always written (zeroed first), whatever the return.
int llm_run(const ProviderConfig *p, const ClientLimits *lim, LlmCache *cache, LlmJob *jobs, int n, JobDoneFn done, void *ctx,
            ClientStats *stats);
void llm_job_clear(LlmJob *j);
// A reply in the team's own terms again: the scrubbed request's placeholders mapped back (map NULL: nothing to do),
// unless the request keeps them (synthetic data). Shared by the synchronous client and the batch runner.
void llm_job_unscrub(LlmJob *job, const ScrubMap *map);
// The limits for a stage's next call (a re-ask, a judge pass): the budget and the deadline carry on from the
// calls summed in `so_far` instead of starting afresh.
ClientLimits client_limits_continue(const ClientLimits *l, const ClientStats *so_far);
// Adds one call's counts to a stage's running totals (the busiest windows are maxima).
void client_stats_add(ClientStats *to, const ClientStats *from);
