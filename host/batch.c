#include "batch.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text.h"
#include "util.h"

// ---- one synchronous HTTP call, retried on 429, 5xx and connection errors ----------------------------------

typedef struct {
    char *buf;
    size_t len, cap, max;
} Body;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) {
    Body *b = ud;
    size_t n = sz * nm;
    if (b->len + n > b->max) return 0;
    if (b->len + n + 1 > b->cap) b->buf = ld_xrealloc(b->buf, b->cap = (b->len + n + 1) * 2);
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = 0;
    return n;
}

typedef struct {
    const ProviderConfig *p;
    const ClientLimits *lim;
    const char *key;
    const char *version;  // a header every call of this provider carries (anthropic-version), or NULL
} Api;

// method GET or POST; body JSON (content type set), or mime (multipart), or neither. The reply body (heap) and
// status; -1 with an error naming the call when every attempt failed.
static int api_call_n(const Api *a, int attempts, const char *method, const char *url, const char *json, curl_mime *mime, char **out,
                      long *status) {
    char *auth = a->key ? provider_key_header(a->p, a->key) : NULL;
    int rc = -1;
    for (int attempt = 0; attempt < attempts && rc; attempt++) {
        if (attempt) nanosleep(&(struct timespec){(time_t)fmin(a->lim->backoff_base_s * (1 << attempt), 30), 0}, NULL);
        CURL *e = curl_easy_init();
        struct curl_slist *h = auth ? curl_slist_append(NULL, auth) : NULL;
        if (json) h = curl_slist_append(h, "Content-Type: application/json");
        if (a->version) h = curl_slist_append(h, a->version);
        Body b = {NULL, 0, 0, (size_t)1 << 30};
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(a->lim->timeout_s * 1000));
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        if (json) curl_easy_setopt(e, CURLOPT_POSTFIELDS, json);
        if (mime) curl_easy_setopt(e, CURLOPT_MIMEPOST, mime);
        if (!strcmp(method, "POST") && !json && !mime) curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        CURLcode cc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        if (cc == CURLE_OK && *status < 300) {
            *out = b.buf ? b.buf : ld_xstrdup("");
            rc = 0;
        } else if (cc == CURLE_OK && *status != 429 && *status < 500) {  // the provider refused it: asking again will not help
            char *msg = provider_error_message(b.buf ? b.buf : "", b.len, *status);
            ld_set_error("batch API %s %s: HTTP %ld: %s", method, url, *status, msg);
            free(msg), free(b.buf);
            break;
        } else {
            if (cc != CURLE_OK)
                ld_set_error("batch API %s %s: %s", method, url, curl_easy_strerror(cc));
            else
                ld_set_error("batch API %s %s: HTTP %ld", method, url, *status);
            free(b.buf);
        }
    }
    free(auth);
    return rc;
}

static int api_call(const Api *a, const char *method, const char *url, const char *json, curl_mime *mime, char **out, long *status) {
    return api_call_n(a, a->lim->max_attempts, method, url, json, mime, out, status);
}

// A batch's creation is sent once: a timeout after the provider created it, retried, would create a second paid
// batch. A failed creation leaves the batch "submitting": the rerun looks for it in the provider's list.
// *refused: the provider answered no outright (a 4xx but 408 and 429), so it created nothing and no rerun need look
// for the batch in its list.
static cJSON *api_create(const Api *a, const char *url, const char *json, curl_mime *mime, int *refused) {
    char *text;
    long status = 0;
    *refused = 0;
    if (api_call_n(a, 1, "POST", url, json, mime, &text, &status)) {
        *refused = status >= 400 && status < 500 && status != 408 && status != 429;
        return NULL;
    }
    cJSON *o = cJSON_Parse(text);
    if (!o) ld_set_error("batch API POST %s: the reply is not JSON", url);
    free(text);
    return o;
}

static cJSON *api_json(const Api *a, const char *method, const char *url, const char *json) {
    char *text;
    long status;
    if (api_call(a, method, url, json, NULL, &text, &status)) return NULL;
    cJSON *o = cJSON_Parse(text);
    if (!o) ld_set_error("batch API %s %s: the reply is not JSON", method, url);
    free(text);
    return o;
}

static char *url_of(const Api *a, const char *fmt, const char *arg) {
    size_t n = strlen(a->p->base_url) + strlen(fmt) + (arg ? strlen(arg) : 0) + 8;
    char *u = ld_xmalloc(n), path[512];
    snprintf(path, sizeof path, fmt, arg ? arg : "");
    snprintf(u, n, "%s%s", a->p->base_url, path);
    return u;
}

static const char *str_of(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// ---- the requests of one llm_run, deduplicated by cache key ---------------------------------------------------

typedef struct {
    char *key, *body;  // the cache key (the batch line's custom_id) and the request body
    int *jobs, n_jobs;  // the jobs asking exactly this
    int settled;  // answered, or failed for good
    char *error;  // the last reason it was not answered (heap)
} Req;

typedef struct {
    const ProviderConfig *p;
    const ClientLimits *lim;
    LlmCache *cache;
    LlmJob *jobs;
    JobDoneFn done;
    void *ctx;
    ScrubMap *const *maps;
    ClientStats *st;
    Api api;
    double deadline;
} Run;

static void settle_job(Run *r, int j, JobStatus status, const LlmReply *reply, double cost, const char *error) {
    LlmJob *job = &r->jobs[j];
    job->status = status, job->cost = cost;
    if (reply) {
        job->reply = (LlmReply){ld_xstrdup(reply->text ? reply->text : ""),
                                reply->prompt_tokens,
                                reply->completion_tokens,
                                reply->usage_known,
                                reply->usage_estimated,
                                reply->finish_reason ? ld_xstrdup(reply->finish_reason) : NULL,
                                reply->received_at ? ld_xstrdup(reply->received_at) : NULL};
        if (r->maps) llm_job_unscrub(job, r->maps[j]);
        r->st->cost_usd += cost, r->st->prompt_tokens += reply->prompt_tokens, r->st->completion_tokens += reply->completion_tokens;
    }
    if (error) free(job->error), job->error = ld_xstrdup(error);
    if (status == JOB_FAILED) r->st->failures++;
    if (status == JOB_SKIPPED_BUDGET) r->st->skipped_budget++;
    if (r->done) r->done(r->ctx, job);
}

static void settle_req(Run *r, Req *q, JobStatus status, const LlmReply *reply, double cost, const char *error) {
    for (int k = 0; k < q->n_jobs; k++) settle_job(r, q->jobs[k], status, reply, cost, error);
    q->settled = 1;
}

static int cmp_req_key(const void *a, const void *b) { return strcmp((*(Req *const *)a)->key, (*(Req *const *)b)->key); }

static Req *find_req(Req **sorted, int m, const char *key) {
    int lo = 0, hi = m - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(sorted[mid]->key, key);
        if (!c) return sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

// ---- the batches: submitted (or found again), polled together to their ends, their results read ----------------

// A batch submitted, or found again after a kill, that is not yet read.
typedef struct {
    char *bkey, *id;  // its key in the cache, the provider's id
    Req **qs;  // its open requests (heap array)
    int m;
    int ended;  // read, its requests settled or left open for the next round
    char said[160];  // its state and counts as last said on stderr
} Batch;

static void note(const Run *r, const char *id, const char *state) {
    if (r->lim->on_batch) r->lim->on_batch(r->lim->on_batch_ctx, id, state);
}

// A batch the provider took (id, or NULL when it did not): recorded before its first poll, counted, said and noted.
// One it refused is marked ended at once: nothing to find again.
static char *submitted(Run *r, const char *bkey, char *id, int m, int refused) {
    if (!id && refused) {
        char why[600];
        snprintf(why, sizeof why, "%s", ld_last_error());
        cache_batch_put(r->cache, bkey, "", "ended");
        ld_set_error("%s", why);
    }
    if (!id) return NULL;
    if (cache_batch_put(r->cache, bkey, id, "submitted")) return free(id), NULL;
    r->st->requests_sent += m;
    fprintf(stderr, "batch: %s submitted (%d requests)\n", id, m);
    note(r, id, "submitted");
    return id;
}

static char *batch_key(const Run *r, Req **qs, int m, int attempt) {
    size_t len = strlen(r->p->base_url) + strlen(r->p->model) + 32;
    for (int i = 0; i < m; i++) len += strlen(qs[i]->key) + 1;
    char *all = ld_xmalloc(len), *o = all;
    o += sprintf(o, "%s\n%s\n%d\n", r->p->base_url, r->p->model, attempt);
    for (int i = 0; i < m; i++) o += sprintf(o, "%s\n", qs[i]->key);
    const char *parts[] = {all};
    char *k = text_sha256_hex(parts, 1);
    free(all);
    return k;
}

static char *submit_openai(Run *r, Req **qs, int m, const char *bkey) {
    if (cache_batch_put(r->cache, bkey, "", "submitting")) return NULL;  // a kill from here on: found by metadata
    size_t len = 1;
    for (int i = 0; i < m; i++) len += strlen(qs[i]->key) + strlen(qs[i]->body) + 96;
    char *jsonl = ld_xmalloc(len), *o = jsonl;
    for (int i = 0; i < m; i++)  // the body last and verbatim: the provider answers exactly what a single call would send
        o += sprintf(o, "{\"custom_id\":\"%s\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":%s}\n", qs[i]->key,
                     qs[i]->body);
    CURL *e = curl_easy_init();
    curl_mime *mime = curl_mime_init(e);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "purpose");
    curl_mime_data(part, "batch", CURL_ZERO_TERMINATED);
    part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_filename(part, "requests.jsonl");
    curl_mime_type(part, "application/jsonl");
    curl_mime_data(part, jsonl, (size_t)(o - jsonl));
    char *u = url_of(&r->api, "/files", NULL), *text = NULL, *id = NULL;
    long status;
    int refused = 0;
    int rc = api_call(&r->api, "POST", u, NULL, mime, &text, &status);
    curl_mime_free(mime);
    curl_easy_cleanup(e);
    free(u), free(jsonl);
    cJSON *file = rc ? NULL : cJSON_Parse(text);
    free(text);
    const char *fid = str_of(file, "id");
    if (fid) {
        cJSON *req = cJSON_CreateObject(), *meta;
        cJSON_AddStringToObject(req, "input_file_id", fid);
        cJSON_AddStringToObject(req, "endpoint", "/v1/chat/completions");
        cJSON_AddStringToObject(req, "completion_window", "24h");
        meta = cJSON_AddObjectToObject(req, "metadata");
        cJSON_AddStringToObject(meta, "llamaduo_batch", bkey);
        char *body = cJSON_PrintUnformatted(req);
        u = url_of(&r->api, "/batches", NULL);
        cJSON *b = api_create(&r->api, u, body, NULL, &refused);
        if (str_of(b, "id")) id = ld_xstrdup(str_of(b, "id"));
        free(u), free(body);
        cJSON_Delete(b), cJSON_Delete(req);
    } else if (!rc) {
        ld_set_error("batch API: the file upload's reply has no id");
    }
    cJSON_Delete(file);
    return submitted(r, bkey, id, m, refused);
}

// ---- Anthropic's Message Batches ---------------------------------------------------------------------------------

static void utc_now(char *out, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static time_t utc_seconds(const char *iso) {  // "2026-12-01T17:20:00..." (the fraction and zone ignored: UTC)
    struct tm tm = {0};
    if (!iso || sscanf(iso, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) return 0;
    tm.tm_year -= 1900, tm.tm_mon -= 1;
    return timegm(&tm);
}

static char *submit_anthropic(Run *r, Req **qs, int m, const char *bkey) {
    char mark[48] = "submitting@";
    utc_now(mark + strlen(mark), sizeof mark - strlen(mark));
    if (cache_batch_put(r->cache, bkey, "", mark)) return NULL;
    size_t len = 32;
    for (int i = 0; i < m; i++) len += strlen(qs[i]->key) + strlen(qs[i]->body) + 40;
    char *body = ld_xmalloc(len), *o = body;
    o += sprintf(o, "{\"requests\":[");
    for (int i = 0; i < m; i++)  // params verbatim: what a single call would send
        o += sprintf(o, "%s{\"custom_id\":\"%s\",\"params\":%s}", i ? "," : "", qs[i]->key, qs[i]->body);
    sprintf(o, "]}");
    char *u = url_of(&r->api, "/v1/messages/batches", NULL), *id = NULL;
    int refused;
    cJSON *b = api_create(&r->api, u, body, NULL, &refused);
    if (str_of(b, "id")) id = ld_xstrdup(str_of(b, "id"));
    free(u), free(body);
    cJSON_Delete(b);
    return submitted(r, bkey, id, m, refused);
}

// Anthropic's state in OpenAI's terms: processing_status ended is the end; results_url says where the results are.
static cJSON *as_openai_state(cJSON *b) {
    const char *ps = str_of(b, "processing_status");
    if (!ps) return b;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(b, "request_counts");
    double done = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "succeeded")), total = 0;
    for (const cJSON *k = c ? c->child : NULL; k; k = k->next) total += cJSON_GetNumberValue(k);
    cJSON *counts = cJSON_CreateObject();
    cJSON_AddNumberToObject(counts, "completed", done);
    cJSON_AddNumberToObject(counts, "total", total);
    cJSON_AddNumberToObject(counts, "failed", total - done - cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "processing")));
    cJSON_DeleteItemFromObject(b, "request_counts");
    cJSON_AddItemToObject(b, "request_counts", counts);
    cJSON_AddStringToObject(b, "status", !strcmp(ps, "ended") ? "completed" : ps);
    return b;
}

// ---- Gemini's batch mode (inline requests, a long-running operation) -------------------------------------------

static char *submit_gemini(Run *r, Req **qs, int m, const char *bkey) {
    if (cache_batch_put(r->cache, bkey, "", "submitting")) return NULL;
    size_t len = 256;
    for (int i = 0; i < m; i++) len += strlen(qs[i]->key) + strlen(qs[i]->body) + 48;
    char *body = ld_xmalloc(len), *o = body;
    o += sprintf(o, "{\"batch\":{\"display_name\":\"llamaduo-%.40s\",\"input_config\":{\"requests\":{\"requests\":[", bkey);
    for (int i = 0; i < m; i++)  // each request verbatim: what a single generateContent call would send
        o += sprintf(o, "%s{\"request\":%s,\"metadata\":{\"key\":\"%s\"}}", i ? "," : "", qs[i]->body, qs[i]->key);
    sprintf(o, "]}}}}");
    char path[512], *id = NULL;
    snprintf(path, sizeof path, "/v1beta/models/%s:batchGenerateContent", r->p->model);
    char *u = url_of(&r->api, "%s", path);
    int refused;
    cJSON *op = api_create(&r->api, u, body, NULL, &refused);
    if (str_of(op, "name")) id = ld_xstrdup(str_of(op, "name"));
    free(u), free(body);
    cJSON_Delete(op);
    return submitted(r, bkey, id, m, refused);
}

// A google.rpc.Status code (what Gemini's batch gives a request that failed) as the HTTP status a single call would
// have had: invalid argument, not found, permission, precondition, out of range, unimplemented and unauthenticated
// are the request's fault (final); the rest may pass. A code already in HTTP's range is kept.
static int http_of_status(int code) {
    static const int http[17] = {200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401};
    return code >= 100 ? code : code >= 0 && code <= 16 ? http[code] : 500;
}

// Gemini's operation in OpenAI's terms: metadata.state (BATCH_STATE_* or JOB_STATE_*) as the status; the inline
// responses, each {response | error, metadata: {key}}, rewritten as OpenAI result lines in "_results".
static cJSON *gemini_as_openai(cJSON *op) {
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(op, "metadata");
    const char *state = str_of(md, "state");
    if (!state) return op;
    const char *st = strrchr(state, '_') ? strrchr(state, '_') + 1 : state;
    static const char *const map[][2] = {{"SUCCEEDED", "completed"}, {"FAILED", "failed"},       {"CANCELLED", "cancelled"},
                                         {"EXPIRED", "expired"},     {"PENDING", "in_progress"}, {"RUNNING", "in_progress"}};
    const char *status = "in_progress";
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(st, map[i][0])) status = map[i][1];
    cJSON_AddStringToObject(op, "status", status);
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(md, "batchStats");
    cJSON *counts = cJSON_AddObjectToObject(op, "request_counts");
    cJSON_AddNumberToObject(counts, "completed", atof(str_of(bs, "successfulRequestCount") ? str_of(bs, "successfulRequestCount") : "0"));
    cJSON_AddNumberToObject(counts, "total", atof(str_of(bs, "requestCount") ? str_of(bs, "requestCount") : "0"));
    cJSON_AddNumberToObject(counts, "failed", atof(str_of(bs, "failedRequestCount") ? str_of(bs, "failedRequestCount") : "0"));
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(op, "response"),
                *outer = cJSON_GetObjectItemCaseSensitive(resp, "inlinedResponses");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(outer, "inlinedResponses");
    if (!cJSON_IsArray(items)) return op;
    char *lines = ld_xstrdup("");
    size_t n = 0, n_items = 0;
    for (const cJSON *it = items->child; it; it = it->next) {
        cJSON *line = cJSON_CreateObject();
        const char *key = str_of(cJSON_GetObjectItemCaseSensitive(it, "metadata"), "key");
        char pos[32];
        snprintf(pos, sizeof pos, "#%d", (int)n_items);  // no key echoed: its place in the request order
        n_items++;
        cJSON_AddStringToObject(line, "custom_id", key ? key : pos);
        const cJSON *rsp = cJSON_GetObjectItemCaseSensitive(it, "response"), *err = cJSON_GetObjectItemCaseSensitive(it, "error");
        if (cJSON_IsObject(rsp)) {
            cJSON *r = cJSON_AddObjectToObject(line, "response");
            cJSON_AddNumberToObject(r, "status_code", 200);
            cJSON_AddItemToObject(r, "body", cJSON_Duplicate(rsp, 1));
        } else if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(err, "code"))) {  // as an HTTP status: a 4xx is permanent
            cJSON *r = cJSON_AddObjectToObject(line, "response");
            cJSON_AddNumberToObject(r, "status_code", http_of_status(cJSON_GetObjectItemCaseSensitive(err, "code")->valueint));
            cJSON_AddItemToObject(cJSON_AddObjectToObject(r, "body"), "error", cJSON_Duplicate(err, 1));
        } else {
            cJSON *e = cJSON_AddObjectToObject(line, "error");
            cJSON_AddStringToObject(e, "code", "error");
            cJSON_AddStringToObject(e, "message", str_of(err, "message") ? str_of(err, "message") : "no response");
        }
        char *t = cJSON_PrintUnformatted(line);
        lines = ld_xrealloc(lines, n + strlen(t) + 2);
        n += (size_t)sprintf(lines + n, "%s\n", t);
        free(t);
        cJSON_Delete(line);
    }
    cJSON_AddStringToObject(op, "_results", lines);
    free(lines);
    return op;
}

// One poll of a batch: its state in OpenAI's terms (a "status" always there), or NULL when it could not be read. Its
// state and counts are said on stderr when they changed since the last poll.
static cJSON *poll_state(Run *r, Batch *b) {
    const char *fmt = r->p->wire == WIRE_ANTHROPIC ? "/v1/messages/batches/%s" : r->p->wire == WIRE_GEMINI ? "/v1beta/%s" : "/batches/%s";
    char *u = url_of(&r->api, fmt, b->id);
    cJSON *got = api_json(&r->api, "GET", u, NULL);
    free(u);
    cJSON *st = r->p->wire == WIRE_GEMINI ? gemini_as_openai(got) : as_openai_state(got);
    const char *s = str_of(st, "status");
    if (!s) {
        if (st) ld_set_error("batch %s: a state without a status", b->id);
        cJSON_Delete(st);
        return NULL;
    }
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(st, "request_counts");
    char now[sizeof b->said];
    snprintf(now, sizeof now, "%s, %.0f of %.0f done, %.0f failed", s, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rc, "completed")),
             cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rc, "total")),
             cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rc, "failed")));
    if (strcmp(now, b->said)) fprintf(stderr, "batch: %s %s\n", b->id, now), snprintf(b->said, sizeof b->said, "%s", now);
    return st;
}

static int has_ended(const char *s) { return !strcmp(s, "completed") || !strcmp(s, "expired") || !strcmp(s, "failed") || !strcmp(s, "cancelled"); }

int batch_results_parse(const ProviderConfig *p, int repair_utf8, char *text, const char *batch_id, BatchResultFn fn, void *ctx) {
    for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        cJSON *o = cJSON_Parse(line);
        BatchResult res = {str_of(o, "custom_id"), 0, 0, 0, {0}, ""};
        const cJSON *resp = cJSON_GetObjectItemCaseSensitive(o, "response"), *err = cJSON_GetObjectItemCaseSensitive(o, "error");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(resp, "status_code"), *body = cJSON_GetObjectItemCaseSensitive(resp, "body");
        double status = cJSON_IsNumber(code) ? code->valuedouble : 0;
        const cJSON *result = cJSON_GetObjectItemCaseSensitive(o, "result");  // Anthropic: {type, message | error}
        const char *type = str_of(result, "type");
        if (cJSON_IsObject(result)) {  // read in OpenAI's terms below
            status = type && !strcmp(type, "succeeded") ? 200 : 0;
            body = cJSON_GetObjectItemCaseSensitive(result, "message");
            err = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(result, "error"), "error");
            res.cancelled = type && !strcmp(type, "canceled");
        }
        if (!res.custom_id) {
            cJSON_Delete(o);
            continue;  // no request to settle: a line that is not ours
        }
        if (cJSON_IsObject(result) && status != 200 && !err) {  // canceled, expired
            snprintf(res.why, sizeof res.why, "batch %s: %s", batch_id, type ? type : "a result without a type");
        } else if (status == 200 && cJSON_IsObject(body)) {
            char *b = cJSON_PrintUnformatted(body), e[256];
            if (provider_parse(p, b, strlen(b), &res.reply, e, sizeof e)) {
                snprintf(res.why, sizeof res.why, "batch %s: unusable reply: %s", batch_id, e);
            } else if (ld_utf8_invalid_at(res.reply.text, strlen(res.reply.text)) >= 0 && !repair_utf8) {
                snprintf(res.why, sizeof res.why, "batch %s: the reply is not valid UTF-8", batch_id);
            } else {
                char *fixed = ld_utf8_repair(res.reply.text, strlen(res.reply.text), NULL);
                free(res.reply.text), res.reply.text = fixed;
                res.ok = 1;
            }
            free(b);
        } else {
            const cJSON *be = cJSON_GetObjectItemCaseSensitive(body, "error");
            const char *msg = str_of(err, "message") ? str_of(err, "message") : str_of(be, "message");
            const char *kind = str_of(err, "code") ? str_of(err, "code") : str_of(err, "type") ? str_of(err, "type") : "HTTP error";
            res.permanent = (status >= 400 && status < 500 && status != 408 && status != 429) ||
                            (str_of(err, "type") && !strcmp(str_of(err, "type"), "invalid_request_error"));
            snprintf(res.why, sizeof res.why, "batch %s: %s%s%.300s", batch_id, kind, msg ? ": " : "", msg ? msg : "");
        }
        fn(ctx, &res);
        llm_reply_free(&res.reply);
        cJSON_Delete(o);
    }
    return 0;
}

typedef struct {
    Run *r;
    Req **sorted;
    int m;
    char **order;  // the batch's request keys as sent, for results that name their place ("#3") instead of their key
    int n_order;
    int cancelled;  // some request came back canceled (Anthropic): its batch was cancelled
    int write_failed;  // a reply could not be committed to the cache: the batch is not marked read
} Settling;

// One result: the request it answers is settled (the reply cached first), or keeps the reason it was not answered.
// A reply that came back but cannot be used was paid for all the same: counted, and recorded as unusable.
static void on_result(void *ctx, BatchResult *res) {
    Settling *s = ctx;
    const char *key = res->custom_id;
    if (key[0] == '#') {
        int i = atoi(key + 1);
        key = i >= 0 && i < s->n_order ? s->order[i] : "";
    }
    Req *q = find_req(s->sorted, s->m, key);
    s->cancelled |= res->cancelled;
    if (!q || q->settled) return;  // not ours, or answered already
    Run *r = s->r;
    double cost = provider_cost(r->p, res->reply.prompt_tokens, res->reply.completion_tokens) * r->p->batch_price_factor;
    if (res->ok && !res->reply.received_at) {  // when its answer reached us, as a synchronous reply records it
        char when[32];
        utc_now(when, sizeof when);
        res->reply.received_at = ld_xstrdup(when);
    }
    if (!res->ok && res->permanent) {  // refused as a request: failed now, not resubmitted round after round
        settle_req(s->r, q, JOB_FAILED, NULL, 0, res->why);
        return;
    }
    if (!res->ok) {
        free(q->error), q->error = ld_xstrdup(res->why);
        if (cost > 0) {  // a reply with usage that could not be used
            r->st->new_cost_usd += cost, r->st->unusable_cost_usd += cost;
            if (cache_put_unusable(r->cache, q->key, cost, res->why)) s->write_failed = 1;
        }
        return;
    }
    r->st->new_cost_usd += cost, r->st->new_prompt_tokens += res->reply.prompt_tokens;
    r->st->new_completion_tokens += res->reply.completion_tokens;
    if (cache_put(r->cache, q->key, r->p, q->body, &res->reply, cost)) s->write_failed = 1;
    settle_req(r, q, JOB_OK, &res->reply, cost, NULL);
}

// One output or error file (OpenAI: a file id; Anthropic: the results_url), downloaded and settled line by line.
// *cancelled: some request came back canceled.
static int read_results(Run *r, const char *file, Settling *s, const char *batch_id) {
    char *u = r->p->wire == WIRE_ANTHROPIC ? ld_xstrdup(file) : url_of(&r->api, "/files/%s/content", file), *text;
    long status;
    int rc = api_call(&r->api, "GET", u, NULL, NULL, &text, &status);
    free(u);
    if (rc) return -1;
    rc = batch_results_parse(r->p, r->lim->repair_utf8, text, batch_id, on_result, s);
    free(text);
    return rc;
}

// Settles what an ended batch answered (its state b), reading every result file; only then is it marked read
// ("ended"), so a download that fails leaves it to be read again by the rerun. The requests it left unanswered stay
// open (for the caller to resubmit); a failed or cancelled batch settles them failed and fails the stage.
static int finish_batch(Run *r, Batch *bt, const cJSON *b) {
    const char *id = bt->id;
    int m = bt->m;
    Req **sorted = ld_xmalloc(sizeof(Req *) * (size_t)(m + 1));
    memcpy(sorted, bt->qs, sizeof(Req *) * (size_t)m);
    qsort(sorted, (size_t)m, sizeof(Req *), cmp_req_key);
    Settling set = {r, sorted, m, NULL, 0, 0, 0};
    set.order = cache_batch_members(r->cache, bt->bkey, &set.n_order);
    const char *status = str_of(b, "status");
    int rc = 0;
    static const char *const files[] = {"output_file_id", "error_file_id", "results_url"};
    for (int f = 0; f < 3 && !rc; f++)
        if (str_of(b, files[f])) rc = read_results(r, str_of(b, files[f]), &set, id);
    if (!rc && str_of(b, "_results")) {  // Gemini: the responses came inline with the operation
        char *text = ld_xstrdup(str_of(b, "_results"));
        rc = batch_results_parse(r->p, r->lim->repair_utf8, text, id, on_result, &set);
        free(text);
    }
    if (!rc && set.write_failed) {
        ld_set_error("batch %s: a reply could not be written to the response cache: rerun to read the batch again", id);
        rc = -1;
    }
    if (!rc && set.cancelled) status = "cancelled";
    if (!rc && (!strcmp(status, "failed") || !strcmp(status, "cancelled"))) {
        const cJSON *e0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "errors"), "data"), 0);
        if (!e0) e0 = cJSON_GetObjectItemCaseSensitive(b, "error");  // Gemini: the operation's error
        char why[400];
        snprintf(why, sizeof why, "batch %s %s%s%s", id, !strcmp(status, "failed") ? "failed" : "was cancelled",
                 str_of(e0, "message") ? ": " : "", str_of(e0, "message") ? str_of(e0, "message") : "");
        for (int i = 0; i < m; i++)
            if (!bt->qs[i]->settled) settle_req(r, bt->qs[i], JOB_FAILED, NULL, 0, why);
        cache_batch_put(r->cache, bt->bkey, id, "ended"), note(r, id, status);
        ld_set_error("%s", why);  // the stage fails: no silent partial result, nothing resubmitted
        rc = -1;
    } else if (!rc) {
        cache_batch_put(r->cache, bt->bkey, id, "ended"), note(r, id, status);
    }
    for (int i = 0; i < set.n_order; i++) free(set.order[i]);
    free(set.order), free(sorted);
    return rc;
}

// A batch key never used before: an ended batch of the same requests (a rerun's resubmission) gets a new one.
static char *fresh_batch_key(Run *r, Req **qs, int m, int attempt) {
    for (int salt = 0;; salt++) {
        char *k = batch_key(r, qs, m, attempt * 1000 + salt), *state = NULL, *id = cache_batch_get(r->cache, k, &state);
        free(state);
        if (!id) return k;
        free(id), free(k);
    }
}

static Batch batch_of(char *bkey, char *id, Req **qs, int m) {
    Batch b = {bkey, id, ld_xmalloc(sizeof(Req *) * (size_t)(m + 1)), m, 0, ""};
    memcpy(b.qs, qs, sizeof(Req *) * (size_t)m);
    return b;
}

static void batches_free(Batch *bs, int nb) {
    for (int i = 0; i < nb; i++) free(bs[i].bkey), free(bs[i].id), free(bs[i].qs);
    free(bs);
}

// Sends these requests as one batch, its requests recorded first so a rerun finds it whatever happens next; *b the
// batch, to be waited for with the others.
static int submit_batch(Run *r, Req **qs, int m, int attempt, Batch *b) {
    char *bkey = fresh_batch_key(r, qs, m, attempt), **keys = ld_xmalloc(sizeof(char *) * (size_t)(m + 1));
    for (int i = 0; i < m; i++) keys[i] = qs[i]->key;
    int rc = cache_batch_add_members(r->cache, bkey, keys, m);
    free(keys);
    WireFormat w = r->p->wire;
    char *id = rc                    ? NULL
               : w == WIRE_ANTHROPIC ? submit_anthropic(r, qs, m, bkey)
               : w == WIRE_GEMINI    ? submit_gemini(r, qs, m, bkey)
                                     : submit_openai(r, qs, m, bkey);
    if (!id) return free(bkey), -1;
    *b = batch_of(bkey, id, qs, m);
    return 0;
}

// Polls every batch, one round of polls every batch_poll_s, until each has ended; each is read as it ends. All of
// them run at the provider at once, so the stage waits about one batch's time, not the sum: with a 24 h window, N
// batches one after another would run into the deadline. A batch that fails, is cancelled or cannot be polled or
// read is an error, but the others are still waited for and read (paid for already); then the stage stops with the
// first error, and a rerun attaches to whatever was left unread.
static int wait_batches(Run *r, Batch *bs, int nb) {
    char first[600] = "";
    for (int ended = 0, said = -1;;) {
        const Batch *open = NULL;
        for (int i = 0; i < nb; i++) {
            if (bs[i].ended) continue;
            cJSON *st = poll_state(r, &bs[i]);
            int rc = !st;
            if (st && has_ended(str_of(st, "status")))
                bs[i].ended = 1, ended++, rc = finish_batch(r, &bs[i], st);
            else if (st && !open)
                open = &bs[i];
            cJSON_Delete(st);
            if (!rc) continue;
            if (!bs[i].ended) bs[i].ended = 1, ended++;  // left as it is recorded: the rerun polls it again
            if (!first[0]) snprintf(first, sizeof first, "%s", ld_last_error());
        }
        if (nb > 1 && ended != said) fprintf(stderr, "batch: %d of %d batches ended\n", ended, nb), said = ended;
        if (!open) return first[0] ? (ld_set_error("%s", first), -1) : 0;
        if (ld_time_s() > r->deadline) {
            ld_set_error("batch %s is still %.*s after the stage's wait (service.batch_deadline_h), %d batch(es) open: rerun to "
                         "attach to them again%s%s",
                         open->id, (int)strcspn(open->said, ","), open->said, nb - ended, first[0] ? "; before that: " : "", first);
            return -1;
        }
        nanosleep(&(struct timespec){(time_t)r->p->batch_poll_s, (long)(fmod(r->p->batch_poll_s, 1) * 1e9)}, NULL);
    }
}

// ---- a batch whose id a kill left unrecorded, found in the provider's batch list --------------------------------

// One batch of the list: nonzero when the reading can stop (what was looked for is known).
typedef int (*ListedFn)(void *ctx, const cJSON *batch);

// Where the next page of the list starts (OpenAI has_more/last_id, Anthropic has_more/last_id, Gemini
// nextPageToken); NULL on the last page, "" when there is one but the page does not say where.
static const char *next_page(WireFormat w, const cJSON *list, const cJSON *items) {
    if (w == WIRE_GEMINI) return str_of(list, "nextPageToken") && *str_of(list, "nextPageToken") ? str_of(list, "nextPageToken") : NULL;
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(list, "has_more"))) return NULL;
    const char *tail = str_of(cJSON_GetArrayItem(items, cJSON_GetArraySize(items) - 1), "id");
    return str_of(list, "last_id") ? str_of(list, "last_id") : tail ? tail : "";
}

// Every page of the provider's batch list (newest first), each batch given to fn until it says stop. -1 when a page
// could not be read, after retries: the batch looked for may be on a page not read, so "not there" is only known of a
// list read to its end.
static int each_listed(Run *r, ListedFn fn, void *ctx) {
    WireFormat w = r->p->wire;
    const char *first = w == WIRE_ANTHROPIC ? "/v1/messages/batches?limit=100" : w == WIRE_GEMINI ? "/v1beta/batches?pageSize=100" : "/batches?limit=100";
    const char *param = w == WIRE_ANTHROPIC ? "&after_id=" : w == WIRE_GEMINI ? "&pageToken=" : "&after=";
    char *cursor = NULL;
    int rc = 0;
    for (int stop = 0, pages = 0; !stop; pages++) {
        if (pages == 10000) {  // a list that keeps leading on (a cursor that cycles) is not read forever
            ld_set_error("batch: the provider's batch list goes on past 10,000 pages");
            rc = -1;
            break;
        }
        char *esc = cursor ? curl_easy_escape(NULL, cursor, 0) : NULL;
        size_t n = strlen(r->p->base_url) + strlen(first) + strlen(param) + (esc ? strlen(esc) : 0) + 1;
        char *u = ld_xmalloc(n);
        snprintf(u, n, "%s%s%s%s", r->p->base_url, first, esc ? param : "", esc ? esc : "");
        curl_free(esc);
        cJSON *list = api_json(&r->api, "GET", u, NULL);
        free(u);
        if (!list) {
            rc = -1;
            break;
        }
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(list, w == WIRE_GEMINI ? "operations" : "data");
        for (const cJSON *b = items ? items->child : NULL; b && !stop; b = b->next) stop = fn(ctx, b);
        const char *next = stop ? NULL : next_page(w, list, items);
        if (next && (!*next || (cursor && !strcmp(next, cursor)))) {  // a page that leads nowhere new: the rest unknown
            ld_set_error("batch: the provider's batch list says it goes on but not where");
            rc = -1, next = NULL;
        }
        free(cursor), cursor = next ? ld_xstrdup(next) : NULL;
        cJSON_Delete(list);
        stop |= !cursor;
    }
    free(cursor);
    return rc;
}

// OpenAI by the metadata its batches carry, Gemini by the display name carrying the requests' hash.
typedef struct {
    WireFormat w;
    const char *want;
    char *id;
} ByName;

static int named(void *ctx, const cJSON *b) {
    ByName *s = ctx;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(b, "metadata");
    const char *name = s->w == WIRE_GEMINI ? (str_of(md, "displayName") ? str_of(md, "displayName") : str_of(md, "display_name"))
                                           : str_of(md, "llamaduo_batch");
    const char *id = str_of(b, s->w == WIRE_GEMINI ? "name" : "id");
    if (name && id && !strcmp(name, s->want)) s->id = ld_xstrdup(id);
    return s->id != NULL;
}

// Anthropic batches carry no metadata: one killed between its creation and its record is found by its size among
// the batches created since the "submitting@TIME" mark, and only when exactly one fits.
typedef struct {
    time_t from;
    int m, fits;
    char *id;
    LlmCache *cache;  // a batch of this run's already recorded is not the one looked for (a split makes them alike)
    char fitting[200];  // the ids that fit, for the error when several do
} BySize;

static int sized(void *ctx, const cJSON *b) {
    BySize *s = ctx;
    const char *created = str_of(b, "created_at");
    if (created && utc_seconds(created) < s->from) return 1;  // newest first: every batch after it is older still
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(b, "request_counts");
    double total = 0;
    for (const cJSON *k = c ? c->child : NULL; k; k = k->next) total += cJSON_GetNumberValue(k);
    const char *id = str_of(b, "id");
    if (!created || total != s->m || !id || cache_batch_known(s->cache, id)) return 0;
    size_t at = strlen(s->fitting);
    snprintf(s->fitting + at, sizeof s->fitting - at, "%s%s", at ? ", " : "", id);
    if (!s->fits++) s->id = ld_xstrdup(id);
    return 0;
}

// The id of a batch of m requests that was sent (state "submitting", or "submitting@TIME") but whose id a kill left
// unrecorded: *id NULL when the whole list was read and it is not there, so it was never created. A list that could
// not be read, or several batches that fit, are errors: sending the requests again could pay for them twice.
static int find_listed(Run *r, const char *bkey, const char *state, int m, char **id) {
    char want[80];
    snprintf(want, sizeof want, "%s%.*s", r->p->wire == WIRE_GEMINI ? "llamaduo-" : "", r->p->wire == WIRE_GEMINI ? 40 : 64, bkey);
    ByName byname = {r->p->wire, want, NULL};
    const char *since = strchr(state, '@') ? strchr(state, '@') + 1 : "";
    BySize bysize = {utc_seconds(since) - 120, m, 0, NULL, r->cache, ""};  // the provider's clock may run behind ours
    int anthropic = r->p->wire == WIRE_ANTHROPIC;
    int rc = anthropic ? each_listed(r, sized, &bysize) : each_listed(r, named, &byname);
    *id = anthropic ? bysize.id : byname.id;
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "%s", ld_last_error());
        ld_set_error("batch: a batch of %d requests was sent before the run stopped, its id not recorded, and the provider's "
                     "batch list could not be read to look for it (%s): nothing is sent again until it can be; rerun later",
                     m, why);
    } else if (anthropic && bysize.fits > 1) {
        ld_set_error("batch: a batch of %d requests (%s, sent %s) was sent but its id not recorded, and several of the provider's "
                     "batches fit it (%s): look at them in the provider's console (and cancel the extra one) before rerunning",
                     m, bkey, since, bysize.fitting);
        rc = -1;
    }
    if (rc) free(*id), *id = NULL;
    return rc;
}

// Before anything is sent: every batch not yet read that holds one of these open requests (a run killed while it
// waited, whatever the attempt or the split) is found again, and they are all waited for together and read. One
// whose id a kill left unrecorded is looked up in the provider's list; one that was never sent is dropped, its
// requests staying open.
static int attach_pending(Run *r, Req *qs, int nq) {
    Req **sorted = ld_xmalloc(sizeof(Req *) * (size_t)(nq + 1));
    for (int i = 0; i < nq; i++) sorted[i] = &qs[i];
    qsort(sorted, (size_t)nq, sizeof(Req *), cmp_req_key);
    char *taken = ld_xcalloc((size_t)nq + 1, 1);  // in a batch found already: its batch is not looked up again
    Batch *bs = ld_xmalloc(sizeof(Batch) * (size_t)(nq + 1));
    int rc = 0, nb = 0;
    for (int i = 0; i < nq && !rc; i++) {
        char *bkey = qs[i].settled || taken[i] ? NULL : cache_batch_of(r->cache, qs[i].key);
        if (!bkey) continue;
        int nk;
        char **keys = cache_batch_members(r->cache, bkey, &nk), *state = NULL, *id = cache_batch_get(r->cache, bkey, &state);
        Req **group = ld_xmalloc(sizeof(Req *) * (size_t)(nk + 1));
        int g = 0;
        for (int k = 0; k < nk; k++) {
            Req *q = find_req(sorted, nq, keys[k]);
            if (q && !q->settled && !taken[q - qs]) group[g++] = q, taken[q - qs] = 1;
        }
        if (id && !*id) {  // killed between sending it and recording its id
            free(id);
            rc = find_listed(r, bkey, state, nk, &id);
            if (!rc)  // found: recorded at once, a second kill needs no search; or never created: in a new batch
                cache_batch_put(r->cache, bkey, id ? id : "", id ? "submitted" : "ended");
        }
        if (!rc && id && *id && g) {
            fprintf(stderr, "batch: attaching to %s (submitted before, %d request(s) still open)\n", id, g);
            bs[nb++] = batch_of(bkey, id, group, g), bkey = id = NULL;
        }
        for (int k = 0; k < nk; k++) free(keys[k]);
        free(keys), free(group), free(id), free(state), free(bkey);
    }
    if (!rc && nb) rc = wait_batches(r, bs, nb);
    batches_free(bs, nb);
    free(sorted), free(taken);
    return rc;
}

// ---- the whole call --------------------------------------------------------------------------------------------

static int collect(Run *r, int n, Req **out) {
    Req *qs = NULL;
    int nq = 0;
    for (int j = 0; j < n; j++) {
        HttpRequest http;
        if (provider_build(r->p, &r->jobs[j].req, &http)) {
            settle_job(r, j, JOB_FAILED, NULL, 0, ld_last_error());
            continue;
        }
        char *key = cache_key(r->p, &http);
        LlmReply cached = {0};
        double cost = 0;
        if (r->lim->use_cache && r->cache && cache_get(r->cache, key, &cached, &cost) == 1) {
            r->jobs[j].cached = 1, r->st->cache_hits++;
            settle_job(r, j, JOB_OK, &cached, cost, NULL);
            llm_reply_free(&cached);
            free(key);
        } else {
            int q = 0;
            while (q < nq && strcmp(qs[q].key, key)) q++;
            if (q == nq) {
                qs = ld_xrealloc(qs, sizeof(Req) * (size_t)(nq + 1));
                qs[nq++] = (Req){key, ld_xstrdup(http.body), NULL, 0, 0, NULL};
            } else {
                free(key);
            }
            qs[q].jobs = ld_xrealloc(qs[q].jobs, sizeof(int) * (size_t)(qs[q].n_jobs + 1));
            qs[q].jobs[qs[q].n_jobs++] = j;
        }
        http_request_free(&http);
    }
    *out = qs;
    return nq;
}

// How many of the next requests one batch takes: at most batch_max_requests, and within the provider's size limit
// (OpenAI's input file 200 MB, Anthropic's request 256 MB, Gemini's inline requests 20 MB; a margin kept for framing).
static int batch_size(const ProviderConfig *p, Req **qs, int left) {
    size_t limit = p->wire == WIRE_GEMINI ? (size_t)19 << 20 : p->wire == WIRE_ANTHROPIC ? (size_t)250 << 20 : (size_t)190 << 20, bytes = 0;
    int k = 0;
    while (k < left && k < p->batch_max_requests) {
        size_t b = strlen(qs[k]->body) + strlen(qs[k]->key) + 96;
        if (k && bytes + b > limit) break;
        bytes += b, k++;
    }
    return k;
}

// The budget (service.budget_usd, run.budget_usd): a batch whose requests could cost more than what is left (each
// at its prompt's size, 4 bytes a token, and the reply at max_tokens, at the batch price) is not submitted; its
// requests are skipped as a synchronous call skips them. (A batch found again by attach_pending was paid for then.)
// *reserved: what the batches submitted in this round, not yet read, could cost; this one's added when it goes.
static int over_budget(Run *r, Req **qs, int m, double *reserved) {
    if (r->lim->budget_usd <= 0) return 0;
    double est = 0;
    for (int i = 0; i < m; i++) est += provider_cost(r->p, (long)strlen(qs[i]->body) / 4 + 1, r->p->max_tokens) * r->p->batch_price_factor;
    double left = r->lim->budget_usd - r->lim->spent_before_usd - r->st->new_cost_usd - *reserved;
    if (est <= left) return *reserved += est, 0;
    char why[200];
    snprintf(why, sizeof why, "skipped: the budget has $%.4f left, a batch of %d request(s) could cost $%.4f", left > 0 ? left : 0, m, est);
    for (int i = 0; i < m; i++) settle_req(r, qs[i], JOB_SKIPPED_BUDGET, NULL, 0, why);
    fprintf(stderr, "batch: %s\n", why);
    return 1;
}

// batch_unanswered: sync — what the batches left goes through the synchronous client at the full price. The
// requests are already scrubbed (so that client scrubs nothing more); each reply is mapped back and settled here.
static int send_one_by_one(Run *r, Req *qs, int nq) {
    int n = 0;
    for (int i = 0; i < nq; i++) n += !qs[i].settled;
    if (!n) return 0;
    fprintf(stderr, "batch: %d request(s) the batches left unanswered: sent one by one at the full price\n", n);
    LlmJob *tmp = ld_xcalloc((size_t)n, sizeof(LlmJob));
    Req **of = ld_xmalloc(sizeof(Req *) * (size_t)n);
    for (int i = 0, k = 0; i < nq; i++)
        if (!qs[i].settled) tmp[k] = (LlmJob){.req = r->jobs[qs[i].jobs[0]].req}, of[k++] = &qs[i];
    ProviderConfig one = *r->p;
    one.batch = 0;
    ClientLimits lim = *r->lim;
    lim.privacy = NULL;
    lim.spent_before_usd += r->st->new_cost_usd;  // the batches' spending and time count against the same budget and deadline
    lim.elapsed_before_s += ld_time_s() - (r->deadline - r->p->batch_deadline_s);
    ClientStats st;
    int rc = llm_run(&one, &lim, r->cache, tmp, n, NULL, NULL, &st);
    r->st->requests_sent += st.requests_sent, r->st->new_cost_usd += st.new_cost_usd;
    r->st->new_prompt_tokens += st.new_prompt_tokens, r->st->new_completion_tokens += st.new_completion_tokens;
    for (int k = 0; k < n; k++) {
        if (rc == 0 && tmp[k].status == JOB_OK)
            settle_req(r, of[k], JOB_OK, &tmp[k].reply, tmp[k].cost, NULL);
        else if (rc == 0)
            settle_req(r, of[k], tmp[k].status, NULL, 0, tmp[k].error ? tmp[k].error : "not answered");
        llm_job_clear(&tmp[k]);
    }
    free(tmp), free(of);
    return rc;
}

int batch_run(const ProviderConfig *p, const ClientLimits *lim, LlmCache *cache, LlmJob *jobs, int n, JobDoneFn done, void *ctx,
              const char *key, ScrubMap *const *maps, ClientStats *st) {
    static int curl_ready;
    if (!curl_ready) curl_global_init(CURL_GLOBAL_DEFAULT), curl_ready = 1;
    if (!cache) {
        ld_set_error("service.batch needs the response cache: it records the batches so a rerun attaches to them");
        return -1;
    }
    double t0 = ld_time_s();
    Run r = {p,
             lim,
             cache,
             jobs,
             done,
             ctx,
             maps,
             st,
             {p, lim, key, p->wire == WIRE_ANTHROPIC ? "anthropic-version: 2023-06-01" : NULL},
             t0 + p->batch_deadline_s};
    Req *qs;
    int nq = collect(&r, n, &qs), rc = attach_pending(&r, qs, nq);
    for (int attempt = 0; rc == 0 && attempt < lim->max_attempts; attempt++) {
        Req **open = ld_xmalloc(sizeof(Req *) * (size_t)(nq + 1));
        int m = 0;
        for (int i = 0; i < nq; i++)
            if (!qs[i].settled) open[m++] = &qs[i];
        if (m && attempt) fprintf(stderr, "batch: %d request(s) left unanswered: submitted again (attempt %d)\n", m, attempt + 1);
        // every batch submitted (and recorded) first, then all waited for together
        Batch *bs = ld_xmalloc(sizeof(Batch) * (size_t)(m + 1));
        int nb = 0;
        double reserved = 0;
        for (int s = 0, k; s < m && rc == 0; s += k) {
            k = batch_size(p, open + s, m - s);
            if (over_budget(&r, open + s, k, &reserved)) continue;
            rc = submit_batch(&r, open + s, k, attempt, &bs[nb]);
            nb += rc == 0;
        }
        if (nb) {  // the batches that went out are read even when a later one could not be sent: they are paid for
            char why[600];
            snprintf(why, sizeof why, "%s", ld_last_error());
            int waited = wait_batches(&r, bs, nb);
            if (rc) ld_set_error("%s", why);
            rc = rc ? rc : waited;
        }
        batches_free(bs, nb);
        free(open);
        if (!m || p->batch_unanswered != 1) break;
    }
    if (rc == 0 && p->batch_unanswered == 2) rc = send_one_by_one(&r, qs, nq);
    int ok = 0;
    for (int i = 0; i < nq; i++) {
        if (!qs[i].settled && rc == 0)
            settle_req(&r, &qs[i], JOB_FAILED, NULL, 0, qs[i].error ? qs[i].error : "not answered by its batches");
        free(qs[i].key), free(qs[i].body), free(qs[i].jobs), free(qs[i].error);
    }
    free(qs);
    for (int j = 0; j < n; j++) ok += jobs[j].status == JOB_OK;
    st->all_failed = n > 0 && ok == 0 && st->failures > 0;
    if (st->all_failed && !st->first_error[0]) {
        for (int j = 0; j < n && !st->first_error[0]; j++)
            if (jobs[j].error) snprintf(st->first_error, sizeof st->first_error, "%s", jobs[j].error);
    }
    st->wall_s = ld_time_s() - t0;
    return rc;
}
