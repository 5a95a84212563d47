#include "llm_client.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "util.h"

ClientLimits client_limits_default(void) {
    return (ClientLimits){.concurrency = 16,
                          .rpm = 0,
                          .tpm = 0,
                          .window_s = 60,
                          .max_attempts = 6,
                          .timeout_s = 120,
                          .backoff_base_s = 1,
                          .backoff_max_s = 60,
                          .budget_usd = 0,
                          .use_cache = 1,
                          .retry_after_max_s = 120,
                          .retry_after_wait = 0,
                          .deadline_s = 0,
                          .max_reply_bytes = (size_t)16 << 20,
                          .repair_utf8 = 0};
}

void llm_job_clear(LlmJob *j) {
    llm_reply_free(&j->reply);
    free(j->error);
    j->error = NULL;
}

ClientLimits client_limits_continue(const ClientLimits *l, const ClientStats *so_far) {
    ClientLimits next = *l;
    next.spent_before_usd += so_far->cost_usd + so_far->unusable_cost_usd;
    next.elapsed_before_s += so_far->wall_s;
    return next;
}

void client_stats_add(ClientStats *to, const ClientStats *from) {
    int to_empty = !to->requests_sent && !to->cache_hits && !to->failures && !to->skipped_budget;
    // all failed only if every call did (a re-ask pass that fails after a good first pass is not a dead service)
    to->all_failed = to_empty ? from->all_failed : to->all_failed && from->all_failed;
    if (!to->first_error[0]) memcpy(to->first_error, from->first_error, sizeof to->first_error);
    to->requests_sent += from->requests_sent, to->retries += from->retries, to->cache_hits += from->cache_hits;
    to->failures += from->failures, to->skipped_budget += from->skipped_budget;
    to->prompt_tokens += from->prompt_tokens, to->completion_tokens += from->completion_tokens;
    to->new_prompt_tokens += from->new_prompt_tokens, to->new_completion_tokens += from->new_completion_tokens;
    to->cost_usd += from->cost_usd, to->new_cost_usd += from->new_cost_usd, to->unusable_cost_usd += from->unusable_cost_usd;
    to->usage_estimated += from->usage_estimated, to->utf8_repaired += from->utf8_repaired;
    to->gave_up |= from->gave_up;
    to->commit_lag_max_s = fmax(to->commit_lag_max_s, from->commit_lag_max_s);
    to->wall_s += from->wall_s;
    if (from->busiest_window > to->busiest_window) to->busiest_window = from->busiest_window;
    if (from->busiest_window_tokens > to->busiest_window_tokens) to->busiest_window_tokens = from->busiest_window_tokens;
    for (int k = 0; k < PII_KINDS; k++) to->scrubbed[k] += from->scrubbed[k];
}

typedef struct {
    int job;
    CURL *easy;
    struct curl_slist *headers;
    HttpRequest http;
    char *key;
    char *buf;
    size_t len, cap, max_len;
    int too_big;  // the body passed max_len and the transfer was aborted
    double retry_after;  // seconds from a Retry-After header, -1 when none
    double sent_at;
    double est_usd;  // reserved against the budget while in flight
} Flight;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) {
    Flight *f = ud;
    size_t n = sz * nm;
    if (f->len + n > f->max_len) {
        f->too_big = 1;
        return 0;  // curl aborts the transfer: a 1 GB reply is never buffered
    }
    if (f->len + n + 1 > f->cap) f->buf = ld_xrealloc(f->buf, f->cap = (f->len + n + 1) * 2);
    memcpy(f->buf + f->len, p, n);
    f->len += n;
    f->buf[f->len] = 0;
    return n;
}

// Retry-After is delta-seconds (digits, a fraction tolerated) or an HTTP date (RFC 9110). Anything else (inf,
// nan, hex, "12abc", a date without its weekday) is ignored.
static double parse_retry_after(const char *v) {
    v += strspn(v, " \t");
    size_t digits = strspn(v, "0123456789");
    if (digits) {
        size_t n = digits + (v[digits] == '.' ? 1 + strspn(v + digits + 1, "0123456789") : 0);
        if (v[n + strspn(v + n, " \t\r\n")]) return -1;
        return fmin(strtod(v, NULL), 1e9);
    }
    time_t t = curl_getdate(v, NULL);
    return t > 0 ? fmin(fmax(0, difftime(t, time(NULL))), 1e9) : -1;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
    Flight *f = ud;
    size_t n = sz * nm;
    if (n > 12 && !strncasecmp(p, "retry-after:", 12)) {
        char v[128];
        size_t k = n - 12 < sizeof v - 1 ? n - 12 : sizeof v - 1;
        memcpy(v, p + 12, k);
        v[k] = 0;
        f->retry_after = parse_retry_after(v);
    }
    return n;
}

// The sliding rate window: send times and token estimates of the requests sent within the last window.
typedef struct {
    double *t;
    long *tok;
    int n, cap;
    double next_pace;  // the next paced send slot (anchored, so timer lateness does not accumulate)
} Window;

static void window_prune(Window *w, double now, double span) {
    int k = 0;
    for (int i = 0; i < w->n; i++)
        if (now - w->t[i] < span) w->t[k] = w->t[i], w->tok[k] = w->tok[i], k++;
    w->n = k;
}

// Earliest time a request of `tok` tokens may be sent without exceeding rpm/tpm in any window.
static double window_next(const Window *w, const ClientLimits *l, long tok, double now) {
    double at = now;
    if (l->rpm > 0 && w->n >= l->rpm) at = fmax(at, w->t[w->n - l->rpm] + l->window_s);
    // paced, not bursty: one request per window/rpm, so the provider sees an even stream (the hard
    // window check above still holds whatever the pacing does)
    if (l->rpm > 0) at = fmax(at, w->next_pace);
    if (l->tpm > 0) {
        long sum = tok;
        for (int i = w->n - 1; i >= 0; i--) {
            sum += w->tok[i];
            if (sum > l->tpm) {
                at = fmax(at, w->t[i] + l->window_s);
                break;
            }
        }
    }
    return at;
}

static void window_add(Window *w, const ClientLimits *l, double now, long tok) {
    if (l->rpm > 0) {
        double gap = l->window_s / l->rpm;
        w->next_pace = fmax(w->next_pace, now - gap) + gap;
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 256;
        w->t = ld_xrealloc(w->t, sizeof(double) * w->cap);
        w->tok = ld_xrealloc(w->tok, sizeof(long) * w->cap);
    }
    w->t[w->n] = now;
    w->tok[w->n++] = tok;
}

static long estimate_prompt_tokens(const LlmRequest *r) {
    size_t chars = 0;
    for (int i = 0; i < r->n_messages; i++) chars += strlen(r->messages[i].content);
    return (long)(chars / 4) + 8;  // ~4 characters a token
}

static double jitter01(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (*s >> 11) * (1.0 / 9007199254740992.0);
}

// JSON mode: the reply must hold a JSON object (bare, or inside a code fence or prose).
static int holds_json_object(const char *text) {
    for (const char *p = strchr(text, '{'); p; p = strchr(p + 1, '{')) {
        cJSON *o = cJSON_ParseWithOpts(p, NULL, 0);
        int ok = cJSON_IsObject(o);
        cJSON_Delete(o);
        if (ok) return 1;
    }
    return 0;
}

static void set_error(LlmJob *j, const char *msg) {
    free(j->error);
    j->error = ld_xstrdup(msg);
}

// One llm_run: its jobs, the transfers in flight, the queue of jobs waiting for a slot or a retry time.
typedef struct {
    const ProviderConfig *p;
    const ClientLimits *lim;
    LlmCache *cache;
    LlmJob *jobs;
    int n;
    JobDoneFn done;
    void *ctx;
    const char *key;
    CURLM *multi;
    Flight *fl;
    int conc, active, finished, ok_jobs;
    double *ready;  // earliest next attempt per job
    int *queue, qn;
    Window win;
    uint64_t rng;
    double deadline;  // absolute; 0 = none
    double spent, reserved;  // for the budget: every reply's cost so far, estimates in flight
    int failed_jobs, mixed_errors;  // jobs that ended failed; whether their errors differ
    int *attempted_and_failed;  // per job: some attempt failed (for "every request fails the same way")
    int distinct_failing, announced, told_long_wait;
    int awaiting_retry;  // queued jobs that have failed an attempt (the probes of a refusing service)
    ScrubMap **maps;  // per job, with a privacy scrubber: its placeholders (in memory only)
    char url[512];
    ClientStats st;
} Client;

void llm_job_unscrub(LlmJob *job, const ScrubMap *map) {
    if (!map || job->req.keep_placeholders || !job->reply.text) return;
    char *t = scrub_restore(map, job->reply.text, job->req.json_mode);  // in a JSON reply, as JSON string text
    free(job->reply.text);
    job->reply.text = t;
}

static void finish(Client *c, LlmJob *job, JobStatus status) {
    if (status == JOB_OK && c->maps) llm_job_unscrub(job, c->maps[job - c->jobs]);
    job->status = status;
    c->finished++;
    if (status == JOB_OK) c->ok_jobs++;
    if (status == JOB_FAILED) c->st.failures++, c->failed_jobs++;
    if (status == JOB_SKIPPED_BUDGET) c->st.skipped_budget++;
    if (c->done) c->done(c->ctx, job);
}

// Every failure, retried or final, feeds the "is the service simply down?" test: nothing has worked, and
// every failure so far is the same refusal (a connection error, a timeout or an HTTP error status; a reply the
// service did give, however bad, means it is up).
static void note_failure(Client *c, int j, const char *err, int refused) {
    if (!c->st.first_error[0])
        snprintf(c->st.first_error, sizeof c->st.first_error, "%s", err);
    else if (strncmp(c->st.first_error, err, sizeof c->st.first_error - 1))
        c->mixed_errors = 1;
    if (!refused) c->mixed_errors = 1;
    if (!c->attempted_and_failed[j]) c->attempted_and_failed[j] = 1, c->distinct_failing++;
    int enough = c->distinct_failing >= (c->n < 3 ? c->n : 3);
    if (!c->announced && !c->ok_jobs && !c->mixed_errors && enough) {
        c->announced = 1;
        fprintf(stderr, "service %s (%s) at %s: every request so far fails: %s\n", wire_name(c->p->wire), c->p->model, c->url, err);
    }
}

static int looks_down(const Client *c) { return c->announced && !c->ok_jobs && !c->mixed_errors; }

// The service fails every request the same way and one request has used all its attempts: the others would
// only repeat that, so they end now, unsent, with that error.
static void give_up(Client *c) {
    char why[400];
    snprintf(why, sizeof why, "not sent: every request to the service failed: %s", c->st.first_error);
    c->st.gave_up = 1;
    for (int q = 0; q < c->qn; q++) {
        LlmJob *job = &c->jobs[c->queue[q]];
        if (job->attempts == 0) set_error(job, why);  // a retry keeps its own last error
        finish(c, job, JOB_FAILED);
    }
    c->qn = c->awaiting_retry = 0;
}

static void fail_job(Client *c, int j, const char *err, int refused) {
    set_error(&c->jobs[j], err);
    note_failure(c, j, err, refused);
    finish(c, &c->jobs[j], JOB_FAILED);
    if (looks_down(c)) give_up(c);
}

// A request's worst case: its estimated prompt and the reply at its maximum.
static double est_cost(const Client *c, long prompt_tokens) { return provider_cost(c->p, prompt_tokens, c->p->max_tokens); }

// A job taken from the queue that needs no transfer: a cache hit, the budget or the deadline. 1 when handled.
static int settle_without_sending(Client *c, int j, const char *ckey, double now) {
    LlmJob *job = &c->jobs[j];
    if (c->cache && c->lim->use_cache && job->attempts == 0 && cache_get(c->cache, ckey, &job->reply, &job->cost)) {
        job->cached = 1;
        // a replayed reply still counts in the stage's tokens and cost (it was paid for once)
        c->spent += job->cost;
        c->st.prompt_tokens += job->reply.prompt_tokens;
        c->st.completion_tokens += job->reply.completion_tokens;
        c->st.cache_hits++;
        finish(c, job, JOB_OK);
        return 1;
    }
    if (c->lim->budget_usd > 0 && c->spent + c->reserved >= c->lim->budget_usd) {
        set_error(job, "budget reached before this request was sent");
        finish(c, job, JOB_SKIPPED_BUDGET);
        return 1;
    }
    if (c->deadline > 0 && now >= c->deadline) {
        char why[160];
        snprintf(why, sizeof why, "stage deadline (deadline_s %g) reached before this request was sent", c->lim->deadline_s);
        set_error(job, why);
        finish(c, job, JOB_FAILED);
        return 1;
    }
    return 0;
}

static void send_request(Client *c, int j, HttpRequest *http, char *ckey, long prompt_est, double now) {
    Flight *f = NULL;
    for (int i = 0; i < c->conc && !f; i++)
        if (c->fl[i].job < 0) f = &c->fl[i];
    *f = (Flight){.job = j,
                  .http = *http,
                  .key = ckey,
                  .buf = f->buf,
                  .cap = f->cap,
                  .max_len = c->lim->max_reply_bytes,
                  .retry_after = -1,
                  .sent_at = now,
                  .est_usd = est_cost(c, prompt_est)};
    f->easy = curl_easy_init();
    for (int h = 0; h < http->n_headers; h++) f->headers = curl_slist_append(f->headers, http->headers[h]);
    if (c->key) {
        char *kh = provider_key_header(c->p, c->key);
        f->headers = curl_slist_append(f->headers, kh);  // curl copies it; ours is wiped at once
        memset(kh, 0, strlen(kh));
        free(kh);
    }
    double timeout = c->lim->timeout_s;
    if (c->deadline > 0) timeout = fmin(timeout, fmax(0.001, c->deadline - now));
    curl_easy_setopt(f->easy, CURLOPT_URL, http->url);
    curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, http->body);
    curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(f->easy, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(f->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->lim->max_reply_bytes);
    curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, (long)ceil(timeout * 1000));
    curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
    curl_multi_add_handle(c->multi, f->easy);
    c->jobs[j].attempts++;
    c->st.requests_sent++;
    c->reserved += f->est_usd;
    c->active++;
}

static void note_window(Client *c) {
    if (c->win.n > c->st.busiest_window) c->st.busiest_window = c->win.n;  // sends within the last window, this one included
    long win_tokens = 0;
    for (int i = 0; i < c->win.n; i++) win_tokens += c->win.tok[i];
    if (win_tokens > c->st.busiest_window_tokens) c->st.busiest_window_tokens = win_tokens;
}

// Starts whatever is ready, within concurrency, budget, deadline and the rate window.
static void start_ready(Client *c, double now, double *wake) {
    for (int qi = 0; qi < c->qn && c->active < c->conc;) {
        int j = c->queue[qi];
        LlmJob *job = &c->jobs[j];
        if (c->ready[j] > now) {
            *wake = fmin(*wake, c->ready[j]);
            qi++;
            continue;
        }
        // only the retries probe a service that refuses everything (while there are any: a budget may end them)
        if (looks_down(c) && job->attempts == 0 && (c->awaiting_retry > 0 || c->active > 0)) {
            qi++;
            continue;
        }
        c->queue[qi] = c->queue[--c->qn];  // take it out of the queue (order among ready jobs does not matter)
        if (job->attempts > 0) c->awaiting_retry--;
        HttpRequest http;
        if (provider_build(c->p, &job->req, &http)) {
            set_error(job, ld_last_error());
            finish(c, job, JOB_FAILED);
            continue;
        }
        if (!c->url[0]) snprintf(c->url, sizeof c->url, "%s", http.url);
        char *ckey = cache_key(c->p, &http);
        if (settle_without_sending(c, j, ckey, now)) {
            free(ckey);
            http_request_free(&http);
            continue;
        }
        long prompt_est = estimate_prompt_tokens(&job->req), est = prompt_est + c->p->max_tokens;  // the reply at its maximum
        window_prune(&c->win, now, c->lim->window_s);
        double at = window_next(&c->win, c->lim, est, now);
        if (at > now) {  // the window is full: put it back and sleep until a slot frees
            c->queue[c->qn++] = j;
            if (job->attempts > 0) c->awaiting_retry++;
            c->ready[j] = at;
            *wake = fmin(*wake, at);
            free(ckey);
            http_request_free(&http);
            break;
        }
        window_add(&c->win, c->lim, now, est);
        note_window(c);
        send_request(c, j, &http, ckey, prompt_est, now);
    }
}

// Usage a server claims is believed only when plausible for the request and the reply: a prompt has no more
// tokens than bytes (plus a template's worth), a reply no more than its maximum (or its bytes), and neither has
// fewer than one token per 32 bytes (no tokenizer packs more; a reply costing nothing would slip past the
// budget). Otherwise the counts are estimated from the sizes, at ~4 bytes a token, and the reply says so.
static void check_usage(const Client *c, const Flight *f, LlmReply *r, size_t reply_bytes) {
    long body = (long)strlen(f->http.body), text = (long)reply_bytes;
    long max_completion = (c->p->max_tokens > text ? c->p->max_tokens : text) + 64;
    if (r->usage_known && r->prompt_tokens <= body + 4096 && r->completion_tokens <= max_completion && r->prompt_tokens >= body / 32 &&
        r->completion_tokens >= text / 32)
        return;
    r->prompt_tokens = body / 4 + 1;
    r->completion_tokens = text / 4 + 1 < c->p->max_tokens ? text / 4 + 1 : c->p->max_tokens;
    r->usage_estimated = 1;
}

// What a reply cost, usage checked (estimated when the server's numbers cannot be believed).
static double reply_cost(Client *c, const Flight *f, LlmReply *r, size_t reply_bytes) {
    check_usage(c, f, r, reply_bytes);
    if (r->usage_estimated) c->st.usage_estimated++;
    return provider_cost(c->p, r->prompt_tokens, r->completion_tokens);
}

static void pay_unusable(Client *c, const Flight *f, LlmJob *job, double usd, const char *why) {
    job->unusable_cost += usd;
    c->spent += usd;
    c->st.unusable_cost_usd += usd;
    if (c->cache && usd > 0) cache_put_unusable(c->cache, f->key, usd, why);
}

typedef enum { REPLY_OK, REPLY_RETRY, REPLY_FAIL } ReplyVerdict;

// A 2xx body: parsed, its usage checked, its text checked. Unusable replies are paid for all the same.
static ReplyVerdict judge_2xx(Client *c, Flight *f, LlmJob *job, char *err, size_t errcap) {
    llm_reply_free(&job->reply);
    if (provider_parse(c->p, f->buf ? f->buf : "", f->len, &job->reply, err, errcap)) {
        pay_unusable(c, f, job, reply_cost(c, f, &job->reply, f->len), err);
        llm_reply_free(&job->reply);
        return REPLY_RETRY;
    }
    double usd = reply_cost(c, f, &job->reply, strlen(job->reply.text));
    long bad = ld_utf8_invalid_at(job->reply.text, strlen(job->reply.text));
    if (bad >= 0 && c->lim->repair_utf8) {
        char *fixed = ld_utf8_repair(job->reply.text, strlen(job->reply.text), NULL);
        free(job->reply.text);
        job->reply.text = fixed;
        c->st.utf8_repaired++;
    } else if (bad >= 0) {
        snprintf(err, errcap, "invalid UTF-8 in the reply (byte %ld)", bad);
        pay_unusable(c, f, job, usd, err);
        llm_reply_free(&job->reply);
        return REPLY_FAIL;  // the same bytes would come back: not worth paying for again
    }
    if (job->req.json_mode && !holds_json_object(job->reply.text)) {
        snprintf(err, errcap, "reply holds no JSON object although JSON was requested");
        pay_unusable(c, f, job, usd, err);
        llm_reply_free(&job->reply);
        return REPLY_RETRY;
    }
    job->cost = usd;
    return REPLY_OK;
}

// *refused: the service did not answer (connection error, timeout, error status) rather than answered badly.
static ReplyVerdict judge_transfer(Client *c, Flight *f, LlmJob *job, CURLcode cc, char *err, size_t errcap, int *refused) {
    long status = 0;
    *refused = 0;
    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    if (f->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, errcap, "reply larger than max_reply_mb (%.1f MB): transfer aborted", c->lim->max_reply_bytes / 1048576.0);
        if (status >= 200 && status < 300) pay_unusable(c, f, job, f->est_usd, err);  // generated, so likely billed
        return REPLY_RETRY;
    }
    *refused = cc != CURLE_OK || status < 200 || status >= 300;
    if (cc != CURLE_OK) {
        snprintf(err, errcap, "%s", curl_easy_strerror(cc));
        return REPLY_RETRY;  // timeouts, resets, refused connections: all worth another try
    }
    if (status >= 200 && status < 300) return judge_2xx(c, f, job, err, errcap);
    char *m = provider_error_message(f->buf, f->len, status);
    snprintf(err, errcap, "%s", m);
    free(m);
    return status == 429 || status == 408 || status == 409 || status >= 500 ? REPLY_RETRY : REPLY_FAIL;
}

static void record_ok(Client *c, Flight *f, LlmJob *job) {
    char when[32];
    time_t now_t = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now_t));
    job->reply.received_at = ld_xstrdup(when);
    c->spent += job->cost;
    c->st.prompt_tokens += job->reply.prompt_tokens;
    c->st.completion_tokens += job->reply.completion_tokens;
    c->st.new_prompt_tokens += job->reply.prompt_tokens;
    c->st.new_completion_tokens += job->reply.completion_tokens;
    if (c->cache) cache_put(c->cache, f->key, c->p, f->http.body, &job->reply, job->cost);
    double total_time = 0;
    curl_easy_getinfo(f->easy, CURLINFO_TOTAL_TIME, &total_time);
    c->st.commit_lag_max_s = fmax(c->st.commit_lag_max_s, ld_time_s() - (f->sent_at + total_time));
}

// The wait before the next attempt, or -1 when there is none to make (the error says why).
static double retry_delay(Client *c, const Flight *f, const LlmJob *job, char *err, size_t errcap) {
    const ClientLimits *l = c->lim;
    if (job->attempts >= l->max_attempts) return -1;
    double back = fmin(l->backoff_max_s, l->backoff_base_s * pow(2, job->attempts - 1)) * jitter01(&c->rng);
    size_t used = strlen(err);
    if (f->retry_after > l->retry_after_max_s) {
        if (!l->retry_after_wait) {
            snprintf(err + used, errcap - used, "; the service asked to wait %.0f s (Retry-After), over retry_after_max_s (%g s)",
                     f->retry_after, l->retry_after_max_s);
            return -1;
        }
    }
    if (f->retry_after >= 0) back = fmax(back, f->retry_after);
    if (c->deadline > 0 && ld_time_s() + back > c->deadline) {
        snprintf(err + used, errcap - used, "; the next attempt (in %.0f s) would start past the stage deadline (deadline_s %g)", back,
                 l->deadline_s);
        return -1;
    }
    if (f->retry_after > l->retry_after_max_s && !c->told_long_wait++)
        fprintf(stderr, "service %s (%s): %s; waiting %.0f s as its Retry-After asks (long_retry_after: wait)\n", wire_name(c->p->wire),
                c->p->model, err, f->retry_after);
    return back;
}

static void release_flight(Client *c, Flight *f) {
    curl_multi_remove_handle(c->multi, f->easy);
    curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->headers);
    f->headers = NULL;
    http_request_free(&f->http);
    free(f->key);
    c->reserved -= f->est_usd;
    f->job = -1;
    c->active--;
}

// Each finished transfer is settled (and a good reply committed to the cache) as soon as curl reports it.
static void drain_finished(Client *c) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        Flight *f;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        int j = f->job;
        LlmJob *job = &c->jobs[j];
        char err[700] = "";
        int refused;
        ReplyVerdict v = judge_transfer(c, f, job, msg->data.result, err, sizeof err, &refused);
        if (v == REPLY_OK) {
            record_ok(c, f, job);
            release_flight(c, f);
            finish(c, job, JOB_OK);
            continue;
        }
        double back = v == REPLY_RETRY ? retry_delay(c, f, job, err, sizeof err) : -1;
        release_flight(c, f);
        if (back < 0) {
            fail_job(c, j, err, refused);
            continue;
        }
        set_error(job, err);
        note_failure(c, j, err, refused);
        c->ready[j] = ld_time_s() + back;
        c->queue[c->qn++] = j;
        c->awaiting_retry++;
        c->st.retries++;
    }
}

// The reported sums add in job order, not completion order (the budget's running sums above), so a resumed run
// that replays some replies from the cache reports the same dollars to the last bit.
static void final_sums(Client *c) {
    c->st.cost_usd = c->st.new_cost_usd = c->st.unusable_cost_usd = 0;
    for (int i = 0; i < c->n; i++) {
        const LlmJob *j = &c->jobs[i];
        c->st.new_cost_usd += j->unusable_cost;
        c->st.unusable_cost_usd += j->unusable_cost;
        if (j->status != JOB_OK) continue;
        c->st.cost_usd += j->cost;
        if (!j->cached) c->st.new_cost_usd += j->cost;
    }
    c->st.all_failed = c->n > 0 && !c->ok_jobs && c->failed_jobs == c->n;
    if (c->st.usage_estimated)
        fprintf(stderr, "service %s (%s): %ld %s missing or implausible usage; tokens estimated from the sizes instead\n",
                wire_name(c->p->wire), c->p->model, c->st.usage_estimated, c->st.usage_estimated == 1 ? "reply had" : "replies had");
}

static void client_init(Client *c, LlmJob *jobs, int n) {
    c->conc = c->lim->concurrency > 0 ? c->lim->concurrency : 1;
    c->fl = ld_xcalloc((size_t)c->conc, sizeof(Flight));
    for (int i = 0; i < c->conc; i++) c->fl[i].job = -1;
    c->ready = ld_xcalloc((size_t)n + 1, sizeof(double));
    c->queue = ld_xmalloc(sizeof(int) * ((size_t)n + 1));
    c->attempted_and_failed = ld_xcalloc((size_t)n + 1, sizeof(int));
    for (int i = 0; i < n; i++) {
        jobs[i].status = JOB_PENDING;
        jobs[i].attempts = 0;
        jobs[i].cached = 0;
        jobs[i].cost = jobs[i].unusable_cost = 0;
        c->queue[c->qn++] = i;
    }
    c->rng = (uint64_t)(ld_time_s() * 1e9) | 1;
    c->multi = curl_multi_init();
}

static void client_free(Client *c) {
    for (int i = 0; i < c->conc; i++) free(c->fl[i].buf);
    free(c->fl), free(c->ready), free(c->queue), free(c->attempted_and_failed), free(c->win.t), free(c->win.tok);
    curl_multi_cleanup(c->multi);
}

// The scrubbed copies of every job's messages, swapped in for the run (originals kept to swap back).
typedef struct {
    const LlmMessage **orig;
    LlmMessage **copy;
} Scrubbed;

static void unscrub_jobs(Client *c, Scrubbed *sc) {
    for (int j = 0; j < c->n; j++) {
        for (int k = 0; sc->copy[j] && k < c->jobs[j].req.n_messages; k++)
            if (sc->copy[j][k].content != sc->orig[j][k].content) free((char *)sc->copy[j][k].content);
        if (sc->copy[j]) c->jobs[j].req.messages = sc->orig[j];
        free(sc->copy[j]);
        scrub_map_free(c->maps[j]);
    }
    free(sc->orig), free(sc->copy), free(c->maps);
    c->maps = NULL;
}

// Before anything leaves: user and assistant messages get placeholders; a system message that matches is refused.
static int scrub_jobs(Client *c, Scrubbed *sc) {
    const Scrubber *s = c->lim->privacy;
    sc->orig = ld_xcalloc((size_t)c->n + 1, sizeof *sc->orig);
    sc->copy = ld_xcalloc((size_t)c->n + 1, sizeof *sc->copy);
    c->maps = ld_xcalloc((size_t)c->n + 1, sizeof(ScrubMap *));
    for (int j = 0; j < c->n; j++) {
        LlmRequest *r = &c->jobs[j].req;
        sc->orig[j] = r->messages;
        sc->copy[j] = ld_xcalloc((size_t)r->n_messages + 1, sizeof(LlmMessage));
        c->maps[j] = scrub_map_new();
        for (int k = 0; k < r->n_messages; k++) scrub_map_reserve(c->maps[j], r->messages[k].content);  // placeholders already written
        for (int k = 0; k < r->n_messages; k++) {
            sc->copy[j][k] = r->messages[k];
            int kind;
            if (!strcmp(r->messages[k].role, "system")) {
                if (scrub_find(s, r->messages[k].content, &kind) == 0) {
                    ld_set_error(
                        "privacy: the system message of request %d holds %s data (%s); it is not rewritten, so the "
                        "request is refused before sending: remove it from the prompt, or from privacy.kinds",
                        j + 1, k_pii_names[kind], kind == PII_TERM ? "a term from privacy.terms" : "a pattern's match");
                    r->messages = sc->copy[j];
                    unscrub_jobs(c, sc);
                    return -1;
                }
                continue;
            }
            sc->copy[j][k].content = scrub_text(s, r->messages[k].content, c->maps[j], c->st.scrubbed);
            if (!sc->copy[j][k].content) {  // it could not be searched whole: refused, never sent half scrubbed
                sc->copy[j][k].content = r->messages[k].content;
                r->messages = sc->copy[j];
                unscrub_jobs(c, sc);
                return -1;
            }
        }
        r->messages = sc->copy[j];
    }
    return 0;
}

int llm_run(const ProviderConfig *p, const ClientLimits *lim, LlmCache *cache, LlmJob *jobs, int n, JobDoneFn done, void *ctx,
            ClientStats *stats) {
    if (stats) *stats = (ClientStats){0};
    Client c = {.p = p, .lim = lim, .cache = cache, .jobs = jobs, .n = n, .done = done, .ctx = ctx};
    double t_start = ld_time_s();
    if (p->api_key_env && p->api_key_env[0]) {
        c.key = getenv(p->api_key_env);
        if (!c.key || !c.key[0]) {
            ld_set_error("environment variable %s (the API key for %s) is not set", p->api_key_env, p->model);
            return -1;
        }
    }
    Scrubbed sc = {0};
    if (lim->privacy && scrub_jobs(&c, &sc)) return -1;
    if (p->batch) {  // the provider's batch API (host/batch.c), the same scrubbed requests and cache keys
        int rc = batch_run(p, lim, cache, jobs, n, done, ctx, c.key, c.maps, &c.st);
        if (c.maps) unscrub_jobs(&c, &sc);
        if (stats) *stats = c.st;
        return rc;
    }
    static int curl_ready;
    if (!curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = 1;
    }
    if (lim->deadline_s > 0) c.deadline = t_start + lim->deadline_s - lim->elapsed_before_s;
    c.spent = lim->spent_before_usd;
    client_init(&c, jobs, n);
    int running;
    while (c.finished < n) {
        // what has arrived is committed before anything new is started (the kill -9 window stays short)
        curl_multi_perform(c.multi, &running);
        drain_finished(&c);
        double now = ld_time_s(), wake = now + 0.2;
        start_ready(&c, now, &wake);
        curl_multi_perform(c.multi, &running);
        drain_finished(&c);
        if (c.finished < n) {
            double wait = fmax(0, fmin(wake, ld_time_s() + 0.2) - ld_time_s());
            curl_multi_poll(c.multi, NULL, 0, (int)ceil(wait * 1000), NULL);
        }
    }
    c.st.wall_s = ld_time_s() - t_start;
    final_sums(&c);
    client_free(&c);
    if (c.maps) unscrub_jobs(&c, &sc);
    if (stats) *stats = c.st;
    return 0;
}
