// llamaduo serve: the model behind an OpenAI-compatible HTTP API (libmicrohttpd: epoll, a fixed pool of
// event-loop threads). One engine thread owns the model: requests wait in a bounded queue, their sequences join
// the running batch between decode steps, and their text flows back to the connections (whole, or as
// server-sent events). No HTTP thread waits for the engine: a connection whose answer is not ready is suspended
// and the engine resumes it when there is something to send. Connections are limited in number (in all and per
// client address) and in time (headers, body), so slow or idle clients cannot starve the others.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "http_server.h"
#include "openai_api.h"
#include "util.h"

static const char *k_help =
    "usage: llamaduo serve --model PATH [--adapter DIR] [--host 127.0.0.1] [--port 8080] [options]\n\n"
    "Serves the model behind an OpenAI-compatible API: POST /v1/chat/completions, POST /v1/completions,\n"
    "GET /v1/models, GET /health. Concurrent requests are decoded together (continuous batching).\n"
    "  --api-key-env NAME      require 'Authorization: Bearer <key>' with the key read from $NAME\n"
    "  --name NAME             the model id clients send (default: the model file or directory name)\n"
    "  --parallel N            sequences decoded together (default 8)\n"
    "  --ctx N                 tokens per sequence, prompt + answer (default 2048, at most the model's)\n"
    "  --queue N               requests waiting beyond the running batch before 429 (default 64)\n"
    "  --max-tokens N          the largest max_tokens a request may ask (default 2048); also the default\n"
    "  --max-body BYTES        request body limit (default 1048576)\n"
    "  --max-messages N        messages per request (default 256)\n"
    "  --max-n N               choices per request (default 8)\n"
    "  --ignore-unknown-fields accept request fields this server does not know (default: refused, 400)\n"
    "  --max-connections N     open connections in all (default 4096, kept under the descriptor limit)\n"
    "  --max-connections-per-client N   open connections from one client address (default 256)\n"
    "  --header-timeout S      seconds a connection has to send its request line and headers, from when it\n"
    "                          opens or its previous answer was sent (default 10)\n"
    "  --body-timeout S        seconds to send the body once the headers are in (default 30)\n"
    "  --http-threads N        event-loop threads for the connections (default 4)\n"
    "  --drain S               on SIGTERM, seconds to let requests in flight finish (default 30)\n"
    "  --chat-template FAMILY  override the model's chat template family\n"
    "  --device auto|cuda|cpu  where the model runs (default auto: the GPU when one is found)\n"
    "  --precision bf16|fp32   the GPU's weights and matrix products (default bf16: half the memory, tensor\n"
    "                          cores, fp32 accumulation; fp32: true fp32, the reference)\n"
    "  --threads N             CPU threads\n";

typedef struct Server Server;

typedef struct Job {
    Server *srv;
    pthread_mutex_t mu;
    int refs;  // the connection's and the engine's
    ApiRequest req;
    int *prompt, n_prompt;
    JsonSchema *schema;
    GenSeq *seqs;
    JsonMatcher **matchers;
    int n, next_admit, n_done, cancelled, in_engine;
    struct MHD_Connection *conn;  // touched by the engine only while suspended: MHD frees no suspended connection
    int fd, suspended;  // the connection's socket; suspended: out of MHD's event loop, waiting for us
    // streaming: events not yet sent
    char *sse;
    size_t sse_len, sse_cap, sse_sent;
    int *role_sent;
    char id[48];
    long created;
    struct Job *next;
} Job;

struct Server {
    Model *m;
    ChatTemplate ct;
    int has_ct;
    GenEngine *eng;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Job *head, *tail;  // waiting for slots
    int queued, queue_limit;
    Job **active;  // jobs with sequences in the engine
    int n_active;
    int stop_ids[16], n_stop_ids, ctx_len;
    ApiLimits lim;
    const char *name, *api_key;
    int stopping, engine_exit;
    int running;  // sequences in the engine, as the engine thread last saw (read under mu)
    long next_id;
    double last_watch;  // when the engine thread last looked for clients that hung up
    HttpServer *http;
};

static void job_release(Job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    for (int i = 0; i < j->n; i++) gen_seq_free(&j->seqs[i]), json_matcher_free(j->matchers[i]);
    json_schema_free(j->schema);
    api_request_free(&j->req);
    free(j->seqs), free(j->matchers), free(j->prompt), free(j->sse), free(j->role_sent);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

// The engine has something for the connection (j->mu held): MHD takes it up again in its event loop.
static void job_wake(Job *j) {
    if (!j->suspended) return;
    j->suspended = 0;
    MHD_resume_connection(j->conn);
}

// The connection waits for the engine (j->mu held; only from an MHD callback, the one place MHD allows it).
static void job_sleep(Job *j) {
    j->suspended = 1;
    MHD_suspend_connection(j->conn);
}

// MHD is closing the connection itself (j->mu held): nothing may resume it any more.
static void job_detach(Job *j) { j->suspended = 0; }

static void sse_append(Job *j, char *ev) {  // takes ev; j->mu held
    size_t n = strlen(ev);
    if (j->sse_sent == j->sse_len) j->sse_sent = j->sse_len = 0;  // all sent: the buffer starts over
    if (j->sse_len + n + 1 > j->sse_cap) j->sse = ld_xrealloc(j->sse, j->sse_cap = (j->sse_len + n + 1) * 2);
    memcpy(j->sse + j->sse_len, ev, n + 1);
    j->sse_len += n;
    free(ev);
}

static const char *finish_name(FinishReason f) { return f == FINISH_LENGTH ? "length" : "stop"; }

static int completion_tokens(const Job *j) {
    int n = 0;
    for (int i = 0; i < j->n; i++) n += j->seqs[i].n_tokens;
    return n;
}

// ---- engine-thread callbacks ------------------------------------------------------------------------------

static void on_text(void *ctx, GenSeq *s, const char *bytes, int n) {
    Job *j = ctx;
    if (!j->req.stream || !n) return;
    int index = (int)(s - j->seqs);
    char *piece = ld_xmalloc((size_t)n + 1);
    memcpy(piece, bytes, (size_t)n);
    piece[n] = 0;
    pthread_mutex_lock(&j->mu);
    if (j->req.kind == API_CHAT && !j->role_sent[index])
        sse_append(j, api_chunk_event(API_CHAT, j->id, j->created, j->srv->name, index, 1, "", NULL)), j->role_sent[index] = 1;
    sse_append(j, api_chunk_event(j->req.kind, j->id, j->created, j->srv->name, index, 0, piece, NULL));
    job_wake(j);
    pthread_mutex_unlock(&j->mu);
    free(piece);
}

static void on_done(void *ctx, GenSeq *s) {
    Job *j = ctx;
    int index = (int)(s - j->seqs);
    pthread_mutex_lock(&j->mu);
    j->n_done++;
    if (j->req.stream) {
        if (j->req.kind == API_CHAT && !j->role_sent[index])
            sse_append(j, api_chunk_event(API_CHAT, j->id, j->created, j->srv->name, index, 1, "", NULL)), j->role_sent[index] = 1;
        sse_append(j, api_chunk_event(j->req.kind, j->id, j->created, j->srv->name, index, 0, NULL, finish_name(s->finish)));
        if (j->n_done == j->n) {
            if (j->req.include_usage)
                sse_append(j, api_usage_event(j->req.kind, j->id, j->created, j->srv->name, j->n_prompt, completion_tokens(j)));
            sse_append(j, ld_xstrdup("data: [DONE]\n\n"));
        }
    }
    if (j->req.stream || j->n_done == j->n) job_wake(j);  // a whole answer goes out at once
    pthread_mutex_unlock(&j->mu);
}

// ---- the engine thread ------------------------------------------------------------------------------------

static void queue_unlink(Server *s, Job *j) {  // s->mu held
    for (Job **pp = &s->head; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            s->queued--;
            break;
        }
    s->tail = NULL;
    for (Job *t = s->head; t; t = t->next) s->tail = t;
}

static void mark_cancelled(Job *j) {  // wakes the connection waiting on the job
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1;
    job_wake(j);
    pthread_mutex_unlock(&j->mu);
}

// A suspended connection is out of MHD's event loop, so MHD would not see its client hang up: the engine thread
// looks for it and cancels the job, which frees its slots or its place in the queue.
static void watch_job(Job *j) {
    pthread_mutex_lock(&j->mu);
    if (j->suspended && !j->cancelled) {
        struct pollfd p = {j->fd, POLLRDHUP, 0};
        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) j->cancelled = 1, job_wake(j);
    }
    pthread_mutex_unlock(&j->mu);
}

static void cancel_hung_up(Server *s) {  // s->mu held; about every 100 ms
    double now = ld_time_s();
    if (now - s->last_watch < 0.1) return;
    s->last_watch = now;
    for (Job *j = s->head; j; j = j->next) watch_job(j);
    for (int a = 0; a < s->n_active; a++) watch_job(s->active[a]);
}

static void *engine_main(void *arg) {
    Server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        cancel_hung_up(s);
        for (Job *j = s->head, *next; j; j = next) {  // cancelled before any of its sequences ran
            next = j->next;
            if (j->cancelled && !j->in_engine) queue_unlink(s, j), job_release(j);
        }
        for (int a = 0; a < s->n_active;) {  // cancelled or finished jobs leave the batch
            Job *j = s->active[a];
            pthread_mutex_lock(&j->mu);
            int finished = j->n_done == j->n;
            pthread_mutex_unlock(&j->mu);
            if (j->cancelled) {
                for (int i = 0; i < j->next_admit; i++) gen_engine_cancel(s->eng, &j->seqs[i]);  // frees their slots
                if (j->next_admit < j->n) queue_unlink(s, j);
            }
            if (j->cancelled || finished) {
                s->active[a] = s->active[--s->n_active];
                job_release(j);
            } else {
                a++;
            }
        }
        // admission: waiting sequences take free slots in arrival order
        while (s->head && gen_engine_free_slots(s->eng) > 0) {
            Job *j = s->head;
            if (!j->in_engine) {
                j->in_engine = 1;
                s->active = ld_xrealloc(s->active, sizeof(Job *) * (size_t)(s->n_active + 1));
                s->active[s->n_active++] = j;
            }
            GenSeq *q = &j->seqs[j->next_admit++];
            if (j->next_admit == j->n) queue_unlink(s, j);
            if (gen_engine_add(s->eng, q)) {  // checked when the request came in: cannot happen
                fprintf(stderr, "serve: %s\n", ld_last_error());
                mark_cancelled(j);
            }
        }
        s->running = gen_engine_active(s->eng);
        if (!s->running) {
            if (s->engine_exit && !s->head && !s->n_active) break;
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        int fed = gen_engine_step(s->eng);
        pthread_mutex_lock(&s->mu);
        if (fed <= 0) {  // an error, or sequences that cannot advance: end them rather than spin
            fprintf(stderr, "serve: %s; cancelling the %d request(s) decoding\n", fed < 0 ? ld_last_error() : "decoding made no progress",
                    s->n_active);
            for (int a = 0; a < s->n_active; a++) mark_cancelled(s->active[a]);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void job_cancel(Job *j) {
    Server *s = j->srv;
    pthread_mutex_lock(&s->mu);
    mark_cancelled(j);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

// ---- HTTP -------------------------------------------------------------------------------------------------

typedef struct {  // one request on a connection (MHD's con_cls)
    HttpBody body;
    Job *job;  // handed to the engine, its whole answer not sent yet
} Request;

// MHD calls this whenever the connection can take more; it never waits: with nothing to send yet, the
// connection is suspended until the engine has more.
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Job *j = cls;
    pthread_mutex_lock(&j->mu);
    ssize_t n = 0;
    if (j->sse_sent < j->sse_len) {
        n = (ssize_t)(j->sse_len - j->sse_sent < max ? j->sse_len - j->sse_sent : max);
        memcpy(buf, j->sse + j->sse_sent, (size_t)n);
        j->sse_sent += (size_t)n;
    } else if (j->cancelled || j->n_done == j->n) {
        n = j->cancelled ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        job_sleep(j);
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

static void stream_done(void *cls) {  // the response is gone: finished, or the client hung up
    Job *j = cls;
    pthread_mutex_lock(&j->mu);
    job_detach(j);
    int unfinished = j->n_done < j->n;
    pthread_mutex_unlock(&j->mu);
    if (unfinished) job_cancel(j);
    job_release(j);
}

static char *render_prompt(Server *s, const ApiRequest *r, int **ids, int *n, ApiError *err) {
    if (r->kind == API_COMPLETION) {
        *n = tok_encode(s->m->tok, r->prompt, strlen(r->prompt), TOK_ADD_SPECIAL, ids);
        return NULL;
    }
    if (!s->has_ct) {
        api_error_set(err, 400, "invalid_request_error", "messages", NULL,
                      "this model has no chat template (start the server with --chat-template FAMILY, or use /v1/completions)");
        return "";
    }
    ChatMessage *cm = ld_xcalloc((size_t)r->n_messages, sizeof(ChatMessage));
    for (int i = 0; i < r->n_messages; i++) cm[i] = (ChatMessage){r->messages[i].role, r->messages[i].content};
    ChatRendered cr;
    int rc = chat_render(&s->ct, cm, r->n_messages, 1, &cr);
    free(cm);
    if (rc) {
        api_error_set(err, 400, "invalid_request_error", "messages", NULL, "%s", ld_last_error());
        return "";
    }
    *n = encode_chat(s->m, &cr, ids);
    chat_rendered_free(&cr);
    return NULL;
}

// The request as a job ready for the engine, or NULL with *err filled.
static Job *job_new(Server *s, ApiKind kind, const Request *q, ApiError *err) {
    Job *j = ld_xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    j->srv = s, j->refs = 1;
    if (api_parse_request(q->body.data ? q->body.data : "", q->body.len, kind, &s->lim, &j->req, err)) goto refused;
    ApiRequest *r = &j->req;
    if (strcmp(r->model, s->name)) {
        api_error_set(err, 404, "invalid_request_error", "model", "model_not_found",
                      "The model '%s' does not exist; this server serves '%s'", r->model, s->name);
        goto refused;
    }
    if (render_prompt(s, r, &j->prompt, &j->n_prompt, err)) goto refused;
    int max_new = r->max_tokens > 0 ? r->max_tokens : s->lim.max_tokens;
    if (r->max_tokens < 0 && j->n_prompt + max_new > s->ctx_len) max_new = s->ctx_len - j->n_prompt;  // default: what fits
    if (j->n_prompt + max_new > s->ctx_len || max_new < 1) {
        api_error_set(err, 400, "invalid_request_error", "messages", "context_length_exceeded",
                      "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d "
                      "in the completion).",
                      s->ctx_len, j->n_prompt + (max_new > 0 ? max_new : 1), j->n_prompt, max_new > 0 ? max_new : 1);
        goto refused;
    }
    if (r->json_mode) {
        j->schema = r->json_mode == 2 ? json_schema_compile(r->json_schema) : json_schema_any_object();
        if (!j->schema) {
            api_error_set(err, 400, "invalid_request_error", "response_format", NULL, "response_format: %s", ld_last_error());
            goto refused;
        }
    }
    j->n = r->n;
    j->seqs = ld_xcalloc((size_t)j->n, sizeof(GenSeq));
    j->matchers = ld_xcalloc((size_t)j->n, sizeof(JsonMatcher *));
    j->role_sent = ld_xcalloc((size_t)j->n, sizeof(int));
    SamplerParams sp = sampler_defaults();
    sp.temperature = (float)r->temperature, sp.top_p = (float)r->top_p, sp.seed = r->has_seed ? r->seed : 0;
    sp.frequency_penalty = (float)r->frequency_penalty, sp.presence_penalty = (float)r->presence_penalty;
    for (int i = 0; i < j->n; i++) {
        if (j->schema) j->matchers[i] = json_matcher_new(j->schema);
        j->seqs[i] = (GenSeq){.prompt = j->prompt,
                              .n_prompt = j->n_prompt,
                              .max_new_tokens = max_new,
                              .sampler = sp,
                              .seed_stream = (uint64_t)i,
                              .stop_strings = (const char *const *)r->stop,
                              .n_stop_strings = r->n_stop,
                              .stop_ids = s->stop_ids,
                              .n_stop_ids = s->n_stop_ids,
                              .json = j->matchers[i],
                              .on_text = on_text,
                              .on_done = on_done,
                              .ctx = j,
                              .slot = -1};
    }
    j->created = (long)time(NULL);
    return j;
refused:
    job_release(j);
    return NULL;
}

// Into the queue (the engine then holds a reference too), or -1 with *err filled: busy or stopping.
static int job_enqueue(Server *s, Job *j, ApiError *err) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->queued >= s->queue_limit) {
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping)
            api_error_set(err, 503, "server_error", NULL, NULL, "the server is shutting down");
        else
            api_error_set(err, 429, "rate_limit_exceeded", NULL, "rate_limit_exceeded",
                          "the server is busy: %d requests are waiting; retry shortly", s->queue_limit);
        return -1;
    }
    snprintf(j->id, sizeof j->id, "%s-%ld%06ld", j->req.kind == API_CHAT ? "chatcmpl" : "cmpl", (long)time(NULL), s->next_id++);
    j->refs = 2;  // the connection's and the engine's
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

// A whole (non-streamed) answer: sent once the engine is done with every choice; until then the connection
// sleeps (MHD calls again when the engine resumes it).
static enum MHD_Result send_answer(Server *s, struct MHD_Connection *c, Request *q) {
    Job *j = q->job;
    pthread_mutex_lock(&j->mu);
    int complete = j->n_done == j->n, waiting = !complete && !j->cancelled;
    if (waiting) job_sleep(j);
    pthread_mutex_unlock(&j->mu);
    if (waiting) return MHD_YES;
    enum MHD_Result ret;
    if (!complete) {
        ApiError err = {0};
        api_error_set(&err, 503, "server_error", NULL, NULL, "the request was cancelled");
        ret = http_send_error(c, &err);
    } else {
        ApiChoice *ch = ld_xcalloc((size_t)j->n, sizeof(ApiChoice));
        for (int i = 0; i < j->n; i++) ch[i] = (ApiChoice){j->seqs[i].text ? j->seqs[i].text : "", finish_name(j->seqs[i].finish)};
        ret = http_send_json(c, 200, api_response_json(j->req.kind, j->id, j->created, s->name, ch, j->n, j->n_prompt, completion_tokens(j)));
        free(ch);
    }
    q->job = NULL;
    job_release(j);
    return ret;
}

static enum MHD_Result handle_completion(Server *s, struct MHD_Connection *c, ApiKind kind, Request *q) {
    ApiError err = {0};
    if (q->body.too_big) {
        api_error_set(&err, 413, "invalid_request_error", NULL, NULL, "the request body is larger than %zu bytes", s->lim.max_body);
        return http_send_error(c, &err);
    }
    Job *j = job_new(s, kind, q, &err);
    if (!j) return http_send_error(c, &err);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->conn = c, j->fd = ci ? ci->connect_fd : -1;
    if (job_enqueue(s, j, &err)) {
        job_release(j);
        return http_send_error(c, &err);
    }
    if (!j->req.stream) {
        q->job = j;
        return send_answer(s, c, q);
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, j, stream_done);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_health(Server *s, struct MHD_Connection *c) {  // liveness plus load
    pthread_mutex_lock(&s->mu);
    int active = s->running, queued = s->queued, stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    int conns = http_connections(c);
    char *b = ld_xmalloc(128);
    snprintf(b, 128, "{\"status\":\"%s\",\"active\":%d,\"queued\":%d,\"connections\":%d}", stopping ? "stopping" : "ok", active, queued,
             conns);
    return http_send_json(c, 200, b);
}

// Everything the headers alone decide is answered before any of the body is read: the route, the method, the
// key. (A body over the limit is read and dropped, then answered 413: a client still sending when the
// connection closes would see the reset, not the answer.) Returns 0 to go on reading, or 1 with *ret the
// queued answer.
static int answer_from_headers(Server *s, struct MHD_Connection *c, const char *url, const char *method, enum MHD_Result *ret) {
    static const HttpRoute routes[] = {{"/health", "GET", 0},
                                       {"/v1/models", "GET", 1},
                                       {"/v1/chat/completions", "POST", 1},
                                       {"/v1/completions", "POST", 1},
                                       {NULL}};
    ApiError err = {0};
    if (!http_route_check(c, url, method, routes, s->api_key, &err)) return 0;
    *ret = http_send_error(c, &err);
    return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    Server *s = cls;
    Request *q = *con_cls;
    if (!q) {  // the headers are in
        enum MHD_Result ret;
        if (answer_from_headers(s, c, url, method, &ret)) return ret;
        *con_cls = ld_xcalloc(1, sizeof(Request));
        return MHD_YES;
    }
    if (*upload_size) {  // the body arrives in pieces (http_body_add)
        http_body_add(&q->body, upload, *upload_size, s->lim.max_body);
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->job) return send_answer(s, c, q);  // resumed by the engine
    if (!strcmp(url, "/health")) return send_health(s, c);
    if (!strcmp(url, "/v1/models")) return http_send_json(c, 200, api_models_json(s->name, (long)time(NULL)));
    return handle_completion(s, c, !strcmp(url, "/v1/chat/completions") ? API_CHAT : API_COMPLETION, q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)cls, (void)c, (void)why;
    Request *q = *con_cls;
    if (q && q->job) {  // the connection closed before its answer went out
        pthread_mutex_lock(&q->job->mu);
        job_detach(q->job);
        pthread_mutex_unlock(&q->job->mu);
        job_cancel(q->job);
        job_release(q->job);
    }
    if (q) free(q->body.data), free(q);
    *con_cls = NULL;
}

// SIGTERM: no new connections or requests, those in flight get up to drain seconds, the rest are cancelled
// (which resumes every suspended connection: MHD must not be stopped with one suspended).
static void stop_server(Server *s, pthread_t engine, int drain) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;  // new requests get 503
    pthread_mutex_unlock(&s->mu);
    http_quiesce(s->http);  // stop accepting connections
    double t0 = ld_time_s();
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int busy = s->head || s->n_active;
        pthread_mutex_unlock(&s->mu);
        if (!busy || ld_time_s() - t0 > drain) break;
        usleep(50 * 1000);
    }
    pthread_mutex_lock(&s->mu);  // whatever is left is cancelled
    for (Job *j = s->head; j; j = j->next) mark_cancelled(j);
    for (int i = 0; i < s->n_active; i++) mark_cancelled(s->active[i]);
    s->engine_exit = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(engine, NULL);
    http_stop(s->http);
}

int cmd_serve(int argc, char **argv) {
    Args a = {argc, argv, 1, "serve"};
    const char *model = NULL, *adapter = NULL, *host = "127.0.0.1", *key_env = NULL, *name = NULL, *tmpl = NULL, *device = "auto",
               *precision = "bf16";
    int port = 8080, parallel = 8, ctx = 2048, queue = 64, max_tokens = 2048, max_body = 1 << 20, max_messages = 256, max_n = 8, drain = 30,
        threads = 0, ignore_unknown = 0, max_conns = 4096, per_client = 256, header_timeout = 10, body_timeout = 30, http_threads = 4;
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("%s", k_help);
            return 0;
        }
        if (arg_value(&a, "--model", &model) || arg_value(&a, "--adapter", &adapter) || arg_value(&a, "--host", &host) ||
            arg_value(&a, "--api-key-env", &key_env) || arg_value(&a, "--device", &device) || arg_value(&a, "--precision", &precision) ||
            arg_value(&a, "--name", &name) || arg_value(&a, "--chat-template", &tmpl) || arg_int(&a, "--port", &port, 0, 65535) ||
            arg_int(&a, "--parallel", &parallel, 1, 1024) || arg_int(&a, "--ctx", &ctx, 16, 1 << 20) ||
            arg_int(&a, "--queue", &queue, 0, 1 << 20) || arg_int(&a, "--max-tokens", &max_tokens, 1, 1 << 20) ||
            arg_int(&a, "--max-body", &max_body, 1024, 1 << 30) || arg_int(&a, "--max-messages", &max_messages, 1, 1 << 20) ||
            arg_int(&a, "--max-n", &max_n, 1, 128) || (arg_flag(&a, "--ignore-unknown-fields") && (ignore_unknown = 1)) ||
            arg_int(&a, "--max-connections", &max_conns, 1, 1 << 20) ||
            arg_int(&a, "--max-connections-per-client", &per_client, 1, 1 << 20) ||
            arg_int(&a, "--header-timeout", &header_timeout, 1, 3600) || arg_int(&a, "--body-timeout", &body_timeout, 1, 3600) ||
            arg_int(&a, "--http-threads", &http_threads, 1, 256) || arg_int(&a, "--drain", &drain, 0, 86400) ||
            arg_int(&a, "--threads", &threads, 1, 1024))
            continue;
        arg_unknown(&a);
    }
    Server s = {0};
    char *own_name = NULL;
    if (key_env) {
        s.api_key = getenv(key_env);
        if (!s.api_key || !*s.api_key) die("--api-key-env %s: the environment variable is not set", key_env);
    }
    set_threads(threads);
    s.m = load_model_or_die(model);
    attach_adapter_or_die(s.m, adapter);
    s.has_ct = chat_template_init(&s.ct, s.m->chat_template, tmpl) == 0;
    if (!s.has_ct) fprintf(stderr, "serve: %s; /v1/chat/completions will refuse requests\n", ld_last_error());
    if (!name) {  // the file or directory name, without .gguf
        const char *base = adapter ? adapter : model;
        size_t L = strlen(base);
        while (L > 1 && base[L - 1] == '/') L--;
        const char *slash = base + L;
        while (slash > base && slash[-1] != '/') slash--;
        char *n = ld_xmalloc(L - (size_t)(slash - base) + 1);
        memcpy(n, slash, L - (size_t)(slash - base));
        n[L - (size_t)(slash - base)] = 0;
        if (strlen(n) > 5 && !strcmp(n + strlen(n) - 5, ".gguf")) n[strlen(n) - 5] = 0;
        name = own_name = n;
    }
    s.name = name;
    s.ctx_len = ctx < s.m->cfg.max_pos ? ctx : s.m->cfg.max_pos;
    s.lim = (ApiLimits){(size_t)max_body, max_messages, max_tokens, max_n, ignore_unknown};
    s.queue_limit = queue;
    s.n_stop_ids = gen_default_stop_ids(s.m, s.stop_ids, 16);
    int use_gpu = device_choose(device), bf16 = precision_bf16(precision);
    if (!(s.eng = gen_engine_new(s.m, parallel, s.ctx_len, 512, use_gpu, bf16))) die("%s", ld_last_error());
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    // SIGTERM / SIGINT are taken by sigwait below: blocked here, before any thread starts, so all inherit it
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t engine;
    pthread_create(&engine, NULL, engine_main, &s);
    s.http = http_start((HttpOptions){"serve", host, port, http_threads, max_conns, per_client, header_timeout, body_timeout, 0,
                                      on_request, on_completed, &s});
    if (!s.http) die("%s", ld_last_error());
    fprintf(stderr, "serve: %s on http://%s:%u/v1 (%d parallel, context %d, queue %d, %d connections, %d per client%s)\n", s.name, host,
            http_port(s.http), parallel, s.ctx_len, queue, http_max_connections(s.http), per_client,
            s.api_key ? ", API key required" : "");
    int sig;
    sigwait(&sigs, &sig);
    fprintf(stderr, "serve: %s: finishing requests in flight (up to %ds)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", drain);
    stop_server(&s, engine, drain);
    fprintf(stderr, "serve: stopped\n");
    gen_engine_free(s.eng);
    free(s.active);
    if (s.has_ct) chat_template_free(&s.ct);
    model_free(s.m);
    free(own_name);
    return 0;
}
