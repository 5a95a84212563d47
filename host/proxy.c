// The proxy's request flow. One thread per connection (host/http_server.c), so a request's thread may wait on
// its upstream: the service first (with retries, the breaker asked each time), the student when the route or a
// failure says so. A streamed answer is relayed as it arrives; a stream's last event waits until its capture is
// committed, so a client that saw the end of an answer has its pair stored.
#define _GNU_SOURCE
#include "proxy.h"

#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http_server.h"
#include "local_server.h"
#include "proxy_metrics.h"
#include "upstream.h"
#include "util.h"

typedef struct ShadowJob {
    long capture_id;
    char *url, *body;
    ScrubMap *map;  // the request's placeholders, so the two answers are scrubbed alike
    struct ShadowJob *next;
} ShadowJob;

typedef struct {
    const ProxyConfig *c;
    const char *service_key, *client_key;  // service.api_key_env's and proxy.api_key_env's: never written anywhere
    char student_url[256];
    HttpServer *http;
    Breaker breaker;
    pthread_mutex_t mu;  // the breaker, the canary shares, the shadow queue, stopping
    pthread_cond_t shadow_cv;
    ShadowJob *shadow_head, *shadow_tail;
    int shadow_queued, stopping;
    int abort;  // past the drain: every upstream wait ends (atomic)
    pthread_t *shadow_threads;
    CaptureDb *capture;
    Scrubber *scrubber;
    unsigned long long sample_state;
    double canary_due[PROXY_MAX_ROUTES];  // per canary route: the student's share accumulated (mu held)
    ProxyMetrics m;
} Proxy;

typedef struct {  // one request (MHD's con_cls)
    Proxy *p;
    int refs;  // the connection's, and a streamed response's (MHD may free either first)
    const char *bearer;  // the client's token, sent on to the service with forward_client_key (MHD's memory)
    HttpBody body;
    int route, stream, chat, fd;
    double t0;
    Answerer by;
    Upstream *up;  // the answer being relayed
    size_t relayed;
    cJSON *req;  // the request's JSON
    int capture_due, shadow_due, finished;
} Req;

// ---- small pieces -----------------------------------------------------------------------------------------

// A line on stderr, at most one a second: a service that is down would otherwise write one per request.
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static double last = -1;
    static long dropped;
    pthread_mutex_lock(&mu);
    double now = ld_time_s();
    if (last >= 0 && now - last < 1.0) {
        dropped++;
    } else {
        if (dropped) fprintf(stderr, "proxy: (%ld more such lines in the last second)\n", dropped);
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "proxy: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        last = now, dropped = 0;
    }
    pthread_mutex_unlock(&mu);
}

static int find_route(const ProxyConfig *c, const char *model) {
    int any = -1;
    for (int i = 0; i < c->n_routes; i++) {
        if (model && !strcmp(c->routes[i].model, model)) return i;
        if (!strcmp(c->routes[i].model, "*")) any = i;
    }
    return any;
}

// Canary: the student's share accumulates per request and is paid out whole, so over n requests the student
// answers share * n of them, within one, evenly spread.
static int canary_to_student(Proxy *p, int route) {
    pthread_mutex_lock(&p->mu);
    double *due = &p->canary_due[route];
    *due += p->c->routes[route].share;
    int student = *due >= 1;
    if (student) *due -= 1;
    pthread_mutex_unlock(&p->mu);
    return student;
}

static int sampled(Proxy *p) {  // capture.sample of forwarded pairs (xorshift: no lock-free rand in libc)
    if (p->c->capture_sample >= 1) return 1;
    pthread_mutex_lock(&p->mu);
    unsigned long long x = p->sample_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p->sample_state = x;
    pthread_mutex_unlock(&p->mu);
    return (double)(x >> 11) / 9007199254740992.0 < p->c->capture_sample;
}

static char *join_url(const char *base, const char *path) {  // base ends in /v1; path is /v1/...
    size_t n = strlen(base);
    while (n && base[n - 1] == '/') n--;
    const char *rest = !strncmp(path, "/v1", 3) ? path + 3 : path;
    char *u = ld_xmalloc(n + strlen(rest) + 1);
    memcpy(u, base, n);
    strcpy(u + n, rest);
    return u;
}

static char *body_for_student(const Req *q, int force_no_stream) {
    cJSON *b = cJSON_Duplicate(q->req, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(b, "model");
    cJSON_AddStringToObject(b, "model", q->p->c->student_name);
    if (force_no_stream) cJSON_DeleteItemFromObjectCaseSensitive(b, "stream"), cJSON_DeleteItemFromObjectCaseSensitive(b, "stream_options");
    char *s = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return s;
}

static int client_gone(int fd) {  // a thread blocked on its upstream would not otherwise see its client hang up
    struct pollfd pf = {fd, POLLRDHUP, 0};
    return fd >= 0 && poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

// ---- capture ---------------------------------------------------------------------------------------------

// The request's conversation, scrubbed, as the capture stores it: chat messages (text parts joined), or a
// completion's prompt as one user message. NULL when scrubbing failed or there is nothing to keep.
static char *scrubbed_messages(Proxy *p, const Req *q, ScrubMap *map) {
    cJSON *out = cJSON_CreateArray();
    int ok = 1;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(q->req, "messages");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(q->req, "prompt");
    const cJSON *list = q->chat ? msgs : NULL;
    for (const cJSON *m = cJSON_IsArray(list) ? list->child : NULL; m && ok; m = m->next) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        char *text = NULL;
        size_t n = 0;
        if (cJSON_IsString(content)) ld_str_append(&text, &n, content->valuestring);
        for (const cJSON *part = cJSON_IsArray(content) ? content->child : NULL; part; part = part->next)
            ld_str_append(&text, &n, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, "text")));
        char *clean = text && cJSON_IsString(role) ? scrub_text(p->scrubber, text, map, NULL) : NULL;
        ok = clean != NULL;
        if (clean) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", role->valuestring);
            cJSON_AddStringToObject(o, "content", clean);
            cJSON_AddItemToArray(out, o);
        }
        free(text), free(clean);
    }
    if (!q->chat && ok) {
        char *clean = cJSON_IsString(prompt) ? scrub_text(p->scrubber, prompt->valuestring, map, NULL) : NULL;
        ok = clean != NULL;
        if (clean) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", "user");
            cJSON_AddStringToObject(o, "content", clean);
            cJSON_AddItemToArray(out, o);
        }
        free(clean);
    }
    char *s = ok && cJSON_GetArraySize(out) ? cJSON_PrintUnformatted(out) : NULL;
    cJSON_Delete(out);
    return s;
}

static void shadow_enqueue(Proxy *p, const Req *q, long id, ScrubMap *map);

// The service's answer stored (and for shadow routes handed to the student): called once the whole answer is in
// and before the client has all of it.
static void capture_answer(Req *q) {
    Proxy *p = q->p;
    if (!q->capture_due || q->finished) return;
    q->finished = 1;
    size_t len;
    const char *body = upstream_body(q->up, &len);
    char *text = api_reply_text(body, len, q->chat ? API_CHAT : API_COMPLETION, q->stream);
    ScrubMap *map = scrub_map_new();
    char *messages = text ? scrubbed_messages(p, q, map) : NULL;
    char *answer = messages ? scrub_text(p->scrubber, text, map, NULL) : NULL;
    long id = -1;
    if (answer) {
        const Route *r = &p->c->routes[q->route];
        CaptureRow row = {r->model, k_route_modes[r->mode], k_answerers[q->by], messages, answer, ld_time_s() - q->t0};
        id = capture_put(p->capture, &row);
        if (id < 0) say("%s", ld_last_error());
    }
    proxy_metrics_add(&p->m, id >= 0 ? &p->m.captured : &p->m.capture_errors, 1);
    if (id >= 0 && q->shadow_due)
        shadow_enqueue(p, q, id, map);
    else
        scrub_map_free(map);
    free(text), free(messages), free(answer);
}

// ---- shadowing --------------------------------------------------------------------------------------------

static void shadow_enqueue(Proxy *p, const Req *q, long id, ScrubMap *map) {
    pthread_mutex_lock(&p->mu);
    int full = p->shadow_queued >= p->c->shadow_queue || p->stopping;
    if (!full) {
        ShadowJob *j = ld_xcalloc(1, sizeof *j);
        j->capture_id = id, j->map = map, j->body = body_for_student(q, 1);
        j->url = join_url(p->student_url, q->chat ? "/v1/chat/completions" : "/v1/completions");
        if (p->shadow_tail)
            p->shadow_tail->next = j;
        else
            p->shadow_head = j;
        p->shadow_tail = j, p->shadow_queued++;
        pthread_cond_signal(&p->shadow_cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (full) scrub_map_free(map), proxy_metrics_add(&p->m, &p->m.shadow_dropped, 1);
}

static void shadow_answer(Proxy *p, ShadowJob *j) {
    double t0 = ld_time_s();
    UpstreamRequest ur = {j->url, j->body, strlen(j->body), NULL, p->c->connect_timeout_s, p->c->student_timeout_s, 0, 16 << 20, &p->abort};
    Upstream *u = upstream_start(&ur);
    int ok = !upstream_wait_all(u) && upstream_status(u) == 200;
    size_t len;
    const char *body = upstream_body(u, &len);
    char *text = ok ? api_reply_text(body, len, strstr(j->url, "/chat/") ? API_CHAT : API_COMPLETION, 0) : NULL;
    char *clean = text ? scrub_text(p->scrubber, text, j->map, NULL) : NULL;
    char why[320];
    snprintf(why, sizeof why, "%s", upstream_failed(u) ? upstream_error(u) : clean ? "" : "the student's answer had no text");
    if (!upstream_failed(u) && upstream_status(u) != 200) snprintf(why, sizeof why, "the student answered HTTP %ld", upstream_status(u));
    if (capture_set_shadow(p->capture, j->capture_id, clean, clean ? NULL : why, ld_time_s() - t0)) say("%s", ld_last_error());
    proxy_metrics_add(&p->m, clean ? &p->m.shadow_ok : &p->m.shadow_failed, 1);
    upstream_free(u);
    free(text), free(clean);
}

static void *shadow_main(void *arg) {
    Proxy *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shadow_head && !p->stopping) pthread_cond_wait(&p->shadow_cv, &p->mu);
        ShadowJob *j = p->shadow_head;
        if (!j) break;  // stopping, and nothing left
        if (!(p->shadow_head = j->next)) p->shadow_tail = NULL;
        p->shadow_queued--;
        pthread_mutex_unlock(&p->mu);
        if (!__atomic_load_n(&p->abort, __ATOMIC_ACQUIRE))
            shadow_answer(p, j);
        else  // past the drain the rest are dropped, and the store says so
            capture_set_shadow(p->capture, j->capture_id, NULL, "dropped: the proxy stopped before the student answered", 0);
        scrub_map_free(j->map), free(j->url), free(j->body), free(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

// ---- upstreams --------------------------------------------------------------------------------------------

static int service_failure(const Upstream *u) {  // what the breaker counts and failover answers for
    long s = upstream_status(u);
    return !s || s == 429 || s >= 500;
}

// The service's key header for a request (its own key, or the client's with forward_client_key) into buf; NULL
// when there is none. The caller wipes buf after use.
static const char *service_auth(const Proxy *p, const Req *q, char *buf, size_t cap) {
    const char *key = p->c->forward_client_key ? q->bearer : p->service_key;
    if (!key) return NULL;
    snprintf(buf, cap, "Authorization: Bearer %s", key);
    return buf;
}

static double retry_wait(const Proxy *p, const Upstream *u, int attempt) {  // -1: do not try again
    const char *ra = upstream_status(u) == 429 ? upstream_header(u, "Retry-After") : NULL;
    if (ra) {
        char *end;
        double v = strtod(ra, &end);
        return end != ra && v >= 0 && isfinite(v) && v <= p->c->retry_after_max_s ? v : -1;
    }
    double base = 0.05 * (1 << attempt);
    return base > 1 ? 1 : base;
}

// The service's answer with its headers in, or NULL when it failed (*last: its last failed answer, if it had a
// status, for relaying when there is no failover; *why: the failover reason). Tried again only where it cannot
// be paid twice: a 429 or a 5xx, or a request that never went out; a timeout or a reset after sending is not.
// The breaker hears one verdict per request, whatever its attempts.
static Upstream *ask_service(Proxy *p, Req *q, const char *path, Upstream **last, FailoverReason *why) {
    *last = NULL;
    pthread_mutex_lock(&p->mu);
    int allowed = breaker_allow(&p->breaker, ld_time_s());
    pthread_mutex_unlock(&p->mu);
    if (!allowed) {
        *why = FAILOVER_BREAKER;
        return NULL;
    }
    char *url = join_url(p->c->service_url, path), auth[4096] = "";
    const char *header = service_auth(p, q, auth, sizeof auth);
    Upstream *ok = NULL;
    for (int attempt = 0; attempt < p->c->max_attempts; attempt++) {
        // a whole answer's headers come only once it is written: the first-byte limit is a stream's
        UpstreamRequest ur = {url,      q->body.data, q->body.len, header, p->c->connect_timeout_s, p->c->timeout_s,
                              q->stream ? p->c->first_byte_timeout_s : 0, 16 << 20, &p->abort};
        Upstream *u = upstream_start(&ur);
        upstream_wait_headers(u);
        // a whole answer is read here, so one that breaks off is a failure the student can still answer for
        int broke = !service_failure(u) && !q->stream && upstream_wait_all(u);
        if (!service_failure(u) && !broke) {
            ok = u;
            break;
        }
        long status = broke ? 0 : upstream_status(u);
        *why = status ? FAILOVER_STATUS : FAILOVER_ERROR;
        if (status)
            say("the service answered HTTP %ld (attempt %d of %d)", status, attempt + 1, p->c->max_attempts);
        else
            say("the service failed: %s (attempt %d of %d)", upstream_error(u), attempt + 1, p->c->max_attempts);
        double wait = attempt + 1 < p->c->max_attempts && (status || (!broke && upstream_unsent(u))) ? retry_wait(p, u, attempt) : -1;
        if (status) {
            upstream_wait_all(u);  // an error body is short: relayed whole if it stands
            upstream_free(*last);
            *last = u;
        } else {
            upstream_free(u);
        }
        if (wait < 0) break;
        proxy_metrics_add(&p->m, &p->m.retries, 1);
        usleep((useconds_t)(wait * 1e6));
    }
    pthread_mutex_lock(&p->mu);
    breaker_result(&p->breaker, ok != NULL, ld_time_s());
    pthread_mutex_unlock(&p->mu);
    memset(auth, 0, sizeof auth);
    free(url);
    return ok;
}

static Upstream *ask_student(Proxy *p, Req *q, const char *path) {
    char *url = join_url(p->student_url, path), *body = body_for_student(q, 0);
    UpstreamRequest ur = {url, body, strlen(body), NULL, p->c->connect_timeout_s, p->c->student_timeout_s, 0, 16 << 20, &p->abort};
    Upstream *u = upstream_start(&ur);
    upstream_wait_headers(u);
    if (!q->stream) upstream_wait_all(u);  // a whole answer that breaks off fails here, before anything is sent
    free(url), free(body);
    if (!upstream_failed(u) && upstream_status(u) != 200 && upstream_status(u) < 500) return u;  // the client's error: relayed
    if (upstream_failed(u) || upstream_status(u) != 200) {
        if (upstream_status(u)) upstream_wait_all(u);
        if (upstream_failed(u))
            say("the student failed: %s", upstream_error(u));
        else
            say("the student answered HTTP %ld", upstream_status(u));
        upstream_free(u);
        return NULL;
    }
    return u;
}

// ---- answering --------------------------------------------------------------------------------------------

// The upstream's headers a client's SDK acts on (when to retry, its limits, the request's id) pass through.
static void pass_headers(struct MHD_Response *r, const Upstream *u) {
    static const char *const keep[] = {"retry-after", "x-ratelimit-", "x-request-id", "openai-", "request-id", NULL};
    for (const char *l = upstream_headers(u), *end; *l; l = end + 1) {
        end = strchr(l, '\n');
        const char *colon = memchr(l, ':', (size_t)(end - l));
        int wanted = 0;
        for (int i = 0; keep[i] && colon && !wanted; i++) wanted = !strncasecmp(l, keep[i], strlen(keep[i]));
        if (!wanted || colon - l > 100 || end - colon > 1000) continue;
        char name[128], value[1024];
        snprintf(name, sizeof name, "%.*s", (int)(colon - l), l);
        const char *v = colon + 1;
        while (*v == ' ' && v < end) v++;
        snprintf(value, sizeof value, "%.*s", (int)(end - v), v);
        MHD_add_response_header(r, name, value);
    }
}

static void add_headers(struct MHD_Response *r, const Req *q, int failover) {
    pass_headers(r, q->up);
    MHD_add_response_header(r, "X-Llamaduo-Answered-By", k_answerers[q->by]);
    MHD_add_response_header(r, "X-Llamaduo-Route", q->p->c->routes[q->route].model);
    if (failover) MHD_add_response_header(r, "X-Llamaduo-Failover", "true");
}

static enum MHD_Result send_error_from(Req *q, struct MHD_Connection *c, const ApiError *e) {
    proxy_metrics_request(&q->p->m, q->route >= 0 ? q->route : 0, BY_NONE, e->status, ld_time_s() - q->t0);
    return http_send_error(c, e);
}

// MHD pulls a stream's bytes here (its thread may wait): relayed as they come, except a final "data: [DONE]",
// held until the answer is captured.
static ssize_t relay_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Req *q = cls;
    for (;;) {
        size_t len;
        const char *body = upstream_body(q->up, &len);
        int done = upstream_done(q->up);
        size_t upto = len;
        if (!done && q->capture_due) {
            // an event's start (JSON escapes a newline, so an answer's own text cannot make one)
            size_t from = q->relayed ? q->relayed - 1 : 0;  // its newline may have gone out already
            const char *end = memmem(body + from, len - from, "\ndata: [DONE]", 13);
            if (end) upto = (size_t)(end - body) + 1;
        }
        if (done && !upstream_failed(q->up)) capture_answer(q);
        if (upto > q->relayed) {
            size_t n = upto - q->relayed < max ? upto - q->relayed : max;
            memcpy(buf, body + q->relayed, n);
            q->relayed += n;
            return (ssize_t)n;
        }
        if (done) return upstream_failed(q->up) ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(q->fd)) return MHD_CONTENT_READER_END_WITH_ERROR;
        upstream_pump(q->up, 0.2);
    }
}

static void req_release(Req *q) {
    pthread_mutex_lock(&q->p->mu);
    int left = --q->refs;
    pthread_mutex_unlock(&q->p->mu);
    if (left) return;
    proxy_metrics_add(&q->p->m, &q->p->m.in_flight, -1);
    upstream_free(q->up);
    cJSON_Delete(q->req);
    free(q->body.data), free(q);
}

static void relay_done(void *cls) {  // the stream is over, sent or not
    Req *q = cls;
    proxy_metrics_request(&q->p->m, q->route, q->by, upstream_failed(q->up) ? 0 : 200, ld_time_s() - q->t0);
    req_release(q);
}

static enum MHD_Result relay(Req *q, struct MHD_Connection *c, int failover) {
    Upstream *u = q->up;
    long status = upstream_status(u);
    struct MHD_Response *r;
    if (q->stream && status == 200) {
        pthread_mutex_lock(&q->p->mu);
        q->refs++;
        pthread_mutex_unlock(&q->p->mu);
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, relay_reader, q, relay_done);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
    } else {
        if (upstream_wait_all(u) && !q->stream) {  // (ask_service and ask_student have read it whole: a safeguard)
            ApiError e = {0};
            api_error_set(&e, 502, "server_error", NULL, NULL, "the %s's answer broke off: %s", k_answerers[q->by], upstream_error(u));
            return send_error_from(q, c, &e);
        }
        if (status == 200) capture_answer(q);
        size_t len;
        const char *body = upstream_body(u, &len);
        r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
        const char *type = upstream_content_type(u);
        MHD_add_response_header(r, "Content-Type", *type ? type : "application/json");
        proxy_metrics_request(&q->p->m, q->route, q->by, (int)status, ld_time_s() - q->t0);
    }
    add_headers(r, q, failover);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

// Who answers, and the answer relayed: the route's mode picks the service or the student; a failing service is
// answered for by the student where the route fails over; a failing canary student by the service.
static enum MHD_Result answer_completion(Req *q, struct MHD_Connection *c, const char *path) {
    Proxy *p = q->p;
    ApiError e = {0};
    q->req = cJSON_ParseWithLength(q->body.data ? q->body.data : "", q->body.len);
    if (!cJSON_IsObject(q->req)) {
        api_error_set(&e, 400, "invalid_request_error", NULL, NULL, "the request body is not a JSON object");
        return send_error_from(q, c, &e);
    }
    const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q->req, "model"));
    q->route = find_route(p->c, model);
    if (q->route < 0) {
        api_error_set(&e, 404, "invalid_request_error", "model", "model_not_found", "The model '%s' has no route on this proxy", model ? model : "");
        return send_error_from(q, c, &e);
    }
    const Route *r = &p->c->routes[q->route];
    q->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q->req, "stream"));
    q->chat = !strcmp(path, "/v1/chat/completions");
    int student = r->mode == MODE_LOCAL || (r->mode == MODE_CANARY && canary_to_student(p, q->route)), failover = 0;
    if (student) {
        q->by = BY_STUDENT;
        if ((q->up = ask_student(p, q, path))) return relay(q, c, 0);
        if (r->mode != MODE_CANARY) {
            api_error_set(&e, 503, "server_error", NULL, NULL, "the local model could not answer (see the proxy's log)");
            return send_error_from(q, c, &e);
        }
        proxy_metrics_add(&p->m, &p->m.student_fallbacks, 1);
    }
    Upstream *last = NULL;
    FailoverReason why = FAILOVER_ERROR;
    q->by = BY_SERVICE;
    q->up = ask_service(p, q, path, &last, &why);
    if (q->up) {
        upstream_free(last);
        q->capture_due = p->capture && upstream_status(q->up) == 200 && (r->mode == MODE_SHADOW || sampled(p));
        q->shadow_due = r->mode == MODE_SHADOW;
        return relay(q, c, 0);
    }
    if (r->failover && !student) {
        proxy_metrics_add(&p->m, &p->m.failovers[q->route][why], 1);
        q->by = BY_STUDENT, failover = 1;
        if ((q->up = ask_student(p, q, path))) {
            upstream_free(last);
            return relay(q, c, failover);
        }
    }
    if (last) {  // the service's own error, as it sent it (the student could not do better)
        q->by = BY_SERVICE, q->up = last;
        return relay(q, c, 0);
    }
    upstream_free(last);
    if (why == FAILOVER_BREAKER)
        api_error_set(&e, 503, "server_error", NULL, NULL, "the service is failing (its circuit breaker is open)%s",
                      failover ? " and the local model could not answer" : "");
    else
        api_error_set(&e, 502, "server_error", NULL, NULL, "the service could not be reached%s", failover ? ", nor the local model" : "");
    return send_error_from(q, c, &e);
}

// GET /v1/models: the service's own list; when it cannot give one, the routes' model names and the student's.
static enum MHD_Result answer_models(Req *q, struct MHD_Connection *c) {
    Proxy *p = q->p;
    char *url = join_url(p->c->service_url, "/v1/models"), auth[4096] = "";
    UpstreamRequest ur = {url, NULL, 0, service_auth(p, q, auth, sizeof auth), p->c->connect_timeout_s, p->c->first_byte_timeout_s, 0, 1 << 20, &p->abort};
    Upstream *u = upstream_start(&ur);
    memset(auth, 0, sizeof auth);
    free(url);
    if (!upstream_wait_all(u) && upstream_status(u) == 200) {
        size_t len;
        const char *body = upstream_body(u, &len);
        char *copy = ld_xmalloc(len + 1);
        memcpy(copy, body, len + 1);
        upstream_free(u);
        return http_send_json(c, 200, copy);
    }
    upstream_free(u);
    cJSON *list = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(list, "data");
    cJSON_AddStringToObject(list, "object", "list");
    for (int i = 0; i <= p->c->n_routes; i++) {
        const char *id = i < p->c->n_routes ? p->c->routes[i].model : *p->student_url ? p->c->student_name : "*";
        if (!strcmp(id, "*")) continue;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)time(NULL));
        cJSON_AddStringToObject(m, "owned_by", i < p->c->n_routes ? "llamaduo-proxy" : "llamaduo-student");
        cJSON_AddItemToArray(data, m);
    }
    char *json = cJSON_PrintUnformatted(list);
    cJSON_Delete(list);
    return http_send_json(c, 200, json);
}

static enum MHD_Result send_text(struct MHD_Connection *c, const char *type, char *text) {  // takes text
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_health(Proxy *p, struct MHD_Connection *c) {
    pthread_mutex_lock(&p->mu);
    BreakerState b = p->breaker.state;
    int stopping = p->stopping, shadow = p->shadow_queued;
    pthread_mutex_unlock(&p->mu);
    char *s = ld_xmalloc(256);
    snprintf(s, 256, "{\"status\":\"%s\",\"breaker\":\"%s\",\"connections\":%d,\"shadow_queued\":%d}", stopping ? "stopping" : "ok",
             breaker_state_name(b), http_connections(c), shadow);
    return http_send_json(c, 200, s);
}

static enum MHD_Result send_metrics(Proxy *p, struct MHD_Connection *c) {
    pthread_mutex_lock(&p->mu);
    BreakerState b = p->breaker.state;
    long opened = p->breaker.times_opened;
    pthread_mutex_unlock(&p->mu);
    return send_text(c, "text/plain; version=0.0.4", proxy_metrics_text(&p->m, p->c, b, opened));
}

// Everything the headers decide is answered before the body is read: the route, the method, the key.
static int answer_from_headers(Proxy *p, struct MHD_Connection *c, const char *url, const char *method, enum MHD_Result *ret) {
    static const HttpRoute routes[] = {{"/health", "GET", 0},
                                       {"/metrics", "GET", 0},
                                       {"/v1/models", "GET", 1},
                                       {"/v1/chat/completions", "POST", 1},
                                       {"/v1/completions", "POST", 1},
                                       {NULL}};
    ApiError e = {0};
    int open_route = !strcmp(url, "/health") || !strcmp(url, "/metrics");
    if (http_route_check(c, url, method, routes, p->client_key, &e) == 0) {
        if (open_route || !p->c->forward_client_key || http_bearer(c)) return 0;
        api_error_set(&e, 401, "invalid_request_error", NULL, "invalid_api_key", "send your service API key as 'Authorization: Bearer <key>'");
    }
    *ret = http_send_error(c, &e);
    return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    Proxy *p = cls;
    Req *q = *con_cls;
    if (!q) {
        enum MHD_Result ret;
        if (answer_from_headers(p, c, url, method, &ret)) return ret;
        q = *con_cls = ld_xcalloc(1, sizeof(Req));
        q->p = p, q->refs = 1, q->t0 = ld_time_s(), q->route = -1;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        q->fd = ci ? ci->connect_fd : -1;
        proxy_metrics_add(&p->m, &p->m.in_flight, 1);
        return MHD_YES;
    }
    if (*upload_size) {  // the body arrives in pieces (http_body_add)
        http_body_add(&q->body, upload, *upload_size, (size_t)p->c->max_body);
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strcmp(url, "/health")) return send_health(p, c);
    if (!strcmp(url, "/metrics")) return send_metrics(p, c);
    if (q->body.too_big) {
        ApiError e = {0};
        api_error_set(&e, 413, "invalid_request_error", NULL, NULL, "the request body is larger than %d bytes", p->c->max_body);
        return send_error_from(q, c, &e);
    }
    pthread_mutex_lock(&p->mu);
    int stopping = p->stopping;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_lock(&p->m.mu);
    long busy = p->m.in_flight;
    pthread_mutex_unlock(&p->m.mu);
    if (stopping || busy > p->c->max_in_flight) {
        ApiError e = {0};
        if (stopping)
            api_error_set(&e, 503, "server_error", NULL, NULL, "the proxy is shutting down");
        else
            api_error_set(&e, 429, "rate_limit_exceeded", NULL, "rate_limit_exceeded", "the proxy is busy: %d requests are being answered; retry shortly",
                          p->c->max_in_flight);
        return send_error_from(q, c, &e);
    }
    q->bearer = http_bearer(c);
    if (!strcmp(url, "/v1/models")) return answer_models(q, c);
    return answer_completion(q, c, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)cls, (void)c, (void)why;
    if (*con_cls) req_release(*con_cls);
    *con_cls = NULL;
}

// ---- running ----------------------------------------------------------------------------------------------

// The student as a `llamaduo serve` child of the proxy, on a free port.
static int start_student(const ProxyConfig *c, const char *self_exe, LocalServer *ls) {
    int port = local_server_free_port();
    if (port < 0) {
        ld_set_error("no free port for the student's server");
        return -1;
    }
    char port_s[16], par[16], ctx[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(par, sizeof par, "%d", c->student_parallel);
    snprintf(ctx, sizeof ctx, "%d", c->student_ctx);
    char *argv[20] = {"llamaduo", "serve", "--model", (char *)c->student_model, "--port", port_s, "--parallel", par, "--ctx", ctx,
                      "--name", (char *)c->student_name, "--device", (char *)c->student_device, "--queue", "4096"};
    int n = 16;
    if (c->student_adapter) argv[n++] = "--adapter", argv[n++] = (char *)c->student_adapter;
    fprintf(stderr, "proxy: starting the student: %s%s%s on port %d (log: %s)\n", c->student_model, c->student_adapter ? " + " : "",
            c->student_adapter ? c->student_adapter : "", port, c->student_log);
    return local_server_start(self_exe, argv, port, c->student_log, 300, ls);
}

// Captured pairs are scrubbed of secrets always (URLs with credentials, API keys), and of personal data too when
// the config's privacy section is on.
static Scrubber *capture_scrubber(const ProxyConfig *c, const char *path, cJSON **kinds) {
    PrivacyConfig pc = c->privacy;
    if (!pc.enabled) {
        *kinds = cJSON_CreateArray();
        cJSON_AddItemToArray(*kinds, cJSON_CreateString("url"));
        cJSON_AddItemToArray(*kinds, cJSON_CreateString("api_key"));
        pc = (PrivacyConfig){.enabled = 1, .kinds = *kinds};
    }
    return scrubber_new(&pc, path);
}

// A URL for the console: user:password@ (credentials in the URL) left out.
static char *url_without_credentials(const char *url) {
    const char *scheme = strstr(url, "://"), *host = scheme ? scheme + 3 : url;
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    char *out = ld_xmalloc(strlen(url) + 8);
    if (at && (!slash || at < slash))
        sprintf(out, "%.*s***@%s", (int)(host - url), url, at + 1);
    else
        strcpy(out, url);
    return out;
}

static void wait_drained(Proxy *p, double drain_s) {
    for (double t0 = ld_time_s(); ld_time_s() - t0 < drain_s; usleep(50 * 1000)) {
        pthread_mutex_lock(&p->m.mu);
        long busy = p->m.in_flight;
        pthread_mutex_unlock(&p->m.mu);
        if (!busy) return;
    }
}

int proxy_run(const ProxyConfig *c, const char *config_path, const char *self_exe) {
    Proxy p = {.c = c, .sample_state = 0x9E3779B97F4A7C15ULL};
    p.service_key = c->service_key_env ? getenv(c->service_key_env) : NULL;
    p.client_key = c->api_key_env ? getenv(c->api_key_env) : NULL;
    cJSON *kinds = NULL;
    LocalServer student = {.pid = -1};
    int rc = -1;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.shadow_cv, NULL);
    proxy_metrics_init(&p.m);
    breaker_init(&p.breaker, c->breaker_failures, c->breaker_window_s, c->breaker_cooldown_s);
    // SIGTERM / SIGINT are taken by sigwait below: blocked before any thread starts, so all inherit it
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!(p.scrubber = capture_scrubber(c, config_path, &kinds))) goto done;
    if (c->capture && !(p.capture = capture_open(c->capture_db))) goto done;
    if (c->student_model && start_student(c, self_exe, &student)) goto done;
    snprintf(p.student_url, sizeof p.student_url, "%s", c->student_model ? student.base_url : c->student_url ? c->student_url : "");
    p.shadow_threads = ld_xcalloc((size_t)c->shadow_workers, sizeof(pthread_t));
    for (int i = 0; i < c->shadow_workers; i++) pthread_create(&p.shadow_threads[i], NULL, shadow_main, &p);
    p.http = http_start((HttpOptions){"proxy", c->host, c->port, 0, c->max_connections, c->per_client, c->header_timeout_s, c->body_timeout_s,
                                      (c->timeout_s > c->student_timeout_s ? c->timeout_s : c->student_timeout_s) + 10, on_request,
                                      on_completed, &p});
    if (p.http) {
        char *service = url_without_credentials(c->service_url);
        fprintf(stderr, "proxy: on http://%s:%u/v1 -> service %s%s%s; %d route(s); capture %s\n", c->host, http_port(p.http), service,
                *p.student_url ? ", student " : "", p.student_url, c->n_routes, p.capture ? c->capture_db : "off");
        free(service);
        for (int i = 0; i < c->n_routes; i++)
            fprintf(stderr, "proxy:   model %s: %s%s\n", c->routes[i].model, k_route_modes[c->routes[i].mode],
                    c->routes[i].failover ? ", failover to the student" : "");
        int sig;
        sigwait(&sigs, &sig);
        fprintf(stderr, "proxy: %s: finishing requests in flight (up to %.0fs)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", c->drain_s);
        pthread_mutex_lock(&p.mu);
        p.stopping = 1;
        pthread_mutex_unlock(&p.mu);
        http_quiesce(p.http);
        wait_drained(&p, c->drain_s);
        __atomic_store_n(&p.abort, 1, __ATOMIC_RELEASE);  // what is still waiting on an upstream ends now
        http_stop(p.http);
        rc = 0;
    }
    pthread_mutex_lock(&p.mu);
    p.stopping = 1;  // the shadow workers finish what is queued, then end
    pthread_cond_broadcast(&p.shadow_cv);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < c->shadow_workers; i++) pthread_join(p.shadow_threads[i], NULL);
    free(p.shadow_threads);
    if (rc == 0) fprintf(stderr, "proxy: stopped\n");
done:
    local_server_stop(&student);
    capture_close(p.capture);
    scrubber_free(p.scrubber);
    cJSON_Delete(kinds);
    breaker_free(&p.breaker);
    return rc;
}
