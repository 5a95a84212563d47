#include "llm_client.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/util.h"

ClientLimits client_limits_default(void) {
    return (ClientLimits){.concurrency = 16, .rpm = 0, .tpm = 0, .window_s = 60, .max_attempts = 6, .timeout_s = 120,
                          .backoff_base_s = 1, .backoff_max_s = 60, .budget_usd = 0, .use_cache = 1};
}

void llm_job_clear(LlmJob *j) {
    llm_reply_free(&j->reply);
    free(j->error);
    j->error = NULL;
}

typedef struct {
    int job;
    CURL *easy;
    struct curl_slist *headers;
    HttpRequest http;
    char *key;
    char *buf;
    size_t len, cap;
    double retry_after;  // seconds from a Retry-After header, -1 when none
    long est_tokens;
} Flight;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) {
    Flight *f = ud;
    size_t n = sz * nm;
    if (f->len + n + 1 > f->cap) f->buf = ld_xrealloc(f->buf, f->cap = (f->len + n + 1) * 2);
    memcpy(f->buf + f->len, p, n);
    f->len += n;
    f->buf[f->len] = 0;
    return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
    Flight *f = ud;
    size_t n = sz * nm;
    if (n > 12 && !strncasecmp(p, "retry-after:", 12)) {
        char v[128];
        size_t k = n - 12 < sizeof v - 1 ? n - 12 : sizeof v - 1;
        memcpy(v, p + 12, k);
        v[k] = 0;
        char *end;
        double s = strtod(v, &end);
        if (end != v && s >= 0) {
            f->retry_after = s;
        } else {  // an HTTP date
            time_t t = curl_getdate(v, NULL);
            if (t > 0) f->retry_after = fmax(0, difftime(t, time(NULL)));
        }
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

static long estimate_tokens(const ProviderConfig *p, const LlmRequest *r) {
    size_t chars = 0;
    for (int i = 0; i < r->n_messages; i++) chars += strlen(r->messages[i].content);
    return (long)(chars / 4) + 8 + p->max_tokens;  // ~4 characters a token, plus the reply at its maximum
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

int llm_run(const ProviderConfig *p, const ClientLimits *lim, LlmCache *cache, LlmJob *jobs, int n, JobDoneFn done,
            void *ctx, ClientStats *stats) {
    ClientStats st = {0};
    if (stats) *stats = st;
    double t_start = ld_time_s();
    const char *key = NULL;
    if (p->api_key_env && p->api_key_env[0]) {
        key = getenv(p->api_key_env);
        if (!key || !key[0]) {
            ld_set_error("environment variable %s (the API key for %s) is not set", p->api_key_env, p->model);
            return -1;
        }
    }
    static int curl_ready;
    if (!curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = 1;
    }
    CURLM *multi = curl_multi_init();
    int conc = lim->concurrency > 0 ? lim->concurrency : 1;
    Flight *fl = ld_xcalloc((size_t)conc, sizeof(Flight));
    for (int i = 0; i < conc; i++) fl[i].job = -1;
    double *ready = ld_xcalloc((size_t)n + 1, sizeof(double));  // earliest next attempt per job
    int *queue = ld_xmalloc(sizeof(int) * ((size_t)n + 1)), qn = 0, finished = 0, active = 0;
    for (int i = 0; i < n; i++) {
        jobs[i].status = JOB_PENDING;
        jobs[i].attempts = 0;
        jobs[i].cached = 0;
        queue[qn++] = i;
    }
    Window win = {0};
    uint64_t rng = (uint64_t)(ld_time_s() * 1e9) | 1;
    while (finished < n) {
        double now = ld_time_s(), wake = now + 0.2;
        // start whatever is ready, within concurrency, budget and the rate window
        for (int qi = 0; qi < qn && active < conc;) {
            int j = queue[qi];
            LlmJob *job = &jobs[j];
            if (ready[j] > now) {
                wake = fmin(wake, ready[j]);
                qi++;
                continue;
            }
            queue[qi] = queue[--qn];  // take it out of the queue (order among ready jobs does not matter)
            HttpRequest http;
            if (provider_build(p, &job->req, &http)) {
                set_error(job, ld_last_error());
                job->status = JOB_FAILED;
                st.failures++, finished++;
                if (done) done(ctx, job);
                continue;
            }
            char *ckey = cache_key(p, &http);
            if (cache && lim->use_cache && job->attempts == 0 && cache_get(cache, ckey, &job->reply, &job->cost)) {
                job->status = JOB_OK;
                job->cached = 1;
                // a replayed reply still counts in the stage's tokens and cost (it was paid for once)
                st.cost_usd += job->cost;
                st.prompt_tokens += job->reply.prompt_tokens;
                st.completion_tokens += job->reply.completion_tokens;
                st.cache_hits++, finished++;
                free(ckey);
                http_request_free(&http);
                if (done) done(ctx, job);
                continue;
            }
            if (lim->budget_usd > 0 && st.cost_usd >= lim->budget_usd) {
                set_error(job, "budget reached before this request was sent");
                job->status = JOB_SKIPPED_BUDGET;
                st.skipped_budget++, finished++;
                free(ckey);
                http_request_free(&http);
                if (done) done(ctx, job);
                continue;
            }
            long est = estimate_tokens(p, &job->req);
            window_prune(&win, now, lim->window_s);
            double at = window_next(&win, lim, est, now);
            if (at > now) {  // the window is full: put it back and sleep until a slot frees
                queue[qn++] = j;
                ready[j] = at;
                wake = fmin(wake, at);
                free(ckey);
                http_request_free(&http);
                break;
            }
            window_add(&win, lim, now, est);
            if (win.n > st.busiest_window) st.busiest_window = win.n;  // sends within the last window, this one included
            long win_tokens = 0;
            for (int i = 0; i < win.n; i++) win_tokens += win.tok[i];
            if (win_tokens > st.busiest_window_tokens) st.busiest_window_tokens = win_tokens;
            Flight *f = NULL;
            for (int i = 0; i < conc && !f; i++)
                if (fl[i].job < 0) f = &fl[i];
            f->job = j;
            f->http = http;
            f->key = ckey;
            f->len = 0;
            f->retry_after = -1;
            f->est_tokens = est;
            f->easy = curl_easy_init();
            for (int h = 0; h < http.n_headers; h++) f->headers = curl_slist_append(f->headers, http.headers[h]);
            if (key) {
                char *kh = provider_key_header(p, key);
                f->headers = curl_slist_append(f->headers, kh);  // curl copies it; ours is wiped at once
                memset(kh, 0, strlen(kh));
                free(kh);
            }
            curl_easy_setopt(f->easy, CURLOPT_URL, http.url);
            curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers);
            curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, http.body);
            curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
            curl_easy_setopt(f->easy, CURLOPT_HEADERFUNCTION, on_header);
            curl_easy_setopt(f->easy, CURLOPT_HEADERDATA, f);
            curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, (long)(lim->timeout_s * 1000));
            curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
            curl_multi_add_handle(multi, f->easy);
            job->attempts++;
            st.requests_sent++;
            active++;
        }
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            Flight *f;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
            LlmJob *job = &jobs[f->job];
            long status = 0;
            curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
            CURLcode cc = msg->data.result;
            char err[512] = "";
            int retry = 0, ok = 0;
            if (cc != CURLE_OK) {
                snprintf(err, sizeof err, "%s", curl_easy_strerror(cc));
                retry = 1;  // timeouts, resets, refused connections: all worth another try
            } else if (status >= 200 && status < 300) {
                llm_reply_free(&job->reply);
                if (provider_parse(p, f->buf ? f->buf : "", f->len, &job->reply, err, sizeof err)) {
                    retry = 1;
                } else if (job->req.json_mode && !holds_json_object(job->reply.text)) {
                    snprintf(err, sizeof err, "reply holds no JSON object although JSON was requested");
                    llm_reply_free(&job->reply);
                    retry = 1;
                } else {
                    ok = 1;
                }
            } else {
                char *m = provider_error_message(f->buf, f->len, status);
                snprintf(err, sizeof err, "%s", m);
                free(m);
                retry = status == 429 || status == 408 || status == 409 || status >= 500;
            }
            if (ok) {
                char when[32];
                time_t now_t = time(NULL);
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now_t));
                job->reply.received_at = ld_xstrdup(when);
                job->cost = provider_cost(p, job->reply.prompt_tokens, job->reply.completion_tokens);
                st.cost_usd += job->cost;
                st.new_cost_usd += job->cost;
                st.prompt_tokens += job->reply.prompt_tokens;
                st.completion_tokens += job->reply.completion_tokens;
                st.new_prompt_tokens += job->reply.prompt_tokens;
                st.new_completion_tokens += job->reply.completion_tokens;
                if (cache) cache_put(cache, f->key, p, f->http.body, &job->reply, job->cost);
                job->status = JOB_OK;
            } else {
                set_error(job, err);
                if (retry && job->attempts < lim->max_attempts) {
                    double back = fmin(lim->backoff_max_s, lim->backoff_base_s * pow(2, job->attempts - 1)) * jitter01(&rng);
                    if (f->retry_after >= 0) back = fmax(back, f->retry_after);
                    ready[f->job] = ld_time_s() + back;
                    queue[qn++] = f->job;
                    st.retries++;
                } else {
                    job->status = JOB_FAILED;
                    st.failures++;
                }
            }
            curl_multi_remove_handle(multi, f->easy);
            curl_easy_cleanup(f->easy);
            curl_slist_free_all(f->headers);
            f->headers = NULL;
            http_request_free(&f->http);
            free(f->key);
            f->job = -1;
            active--;
            if (job->status != JOB_PENDING) {
                finished++;
                if (done) done(ctx, job);
            }
        }
        if (finished < n) {
            double wait = fmax(0, fmin(wake, ld_time_s() + 0.2) - ld_time_s());
            curl_multi_poll(multi, NULL, 0, (int)ceil(wait * 1000), NULL);
        }
    }
    for (int i = 0; i < conc; i++) free(fl[i].buf);
    free(fl), free(ready), free(queue), free(win.t), free(win.tok);
    curl_multi_cleanup(multi);
    st.wall_s = ld_time_s() - t_start;
    // the running sums above (the budget's) add in completion order; the reported ones add in job order, so a
    // resumed run that replays some replies from the cache reports the same dollars to the last bit
    st.cost_usd = st.new_cost_usd = 0;
    for (int i = 0; i < n; i++)
        if (jobs[i].status == JOB_OK) {
            st.cost_usd += jobs[i].cost;
            if (!jobs[i].cached) st.new_cost_usd += jobs[i].cost;
        }
    if (stats) *stats = st;
    return 0;
}
