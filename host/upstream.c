#include "upstream.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

struct Upstream {
    CURLM *multi;
    CURL *easy;
    struct curl_slist *headers;
    char *body;  // received
    size_t len, cap, max_bytes;
    char *resp_headers;  // "Name: value\n" lines of the final response
    size_t hlen, hcap;
    long status;
    int headers_done, done, failed, too_big, sent;  // sent: some of the request's body went out
    char error[CURL_ERROR_SIZE];
    char content_type[128];
    double started, header_timeout_s;
    const int *abort;
};

static void append(char **buf, size_t *len, size_t *cap, const char *p, size_t n) {
    if (*len + n + 1 > *cap) *buf = ld_xrealloc(*buf, *cap = (*len + n + 1) * 2);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    Upstream *u = ctx;
    size_t bytes = size * n;
    u->headers_done = 1;
    if (u->len + bytes > u->max_bytes) {
        u->too_big = 1;
        return 0;  // aborts the transfer
    }
    append(&u->body, &u->len, &u->cap, p, bytes);
    return bytes;
}

// Header lines one by one; an interim response (100 Continue) starts the list over.
static size_t on_header(char *p, size_t size, size_t n, void *ctx) {
    Upstream *u = ctx;
    size_t bytes = size * n;
    if (bytes >= 5 && !strncmp(p, "HTTP/", 5)) {
        u->hlen = 0;
        if (u->resp_headers) u->resp_headers[0] = 0;
        return bytes;
    }
    if (bytes <= 2 && (p[0] == '\r' || p[0] == '\n')) {  // the blank line: the headers of this response are in
        long code = 0;
        curl_easy_getinfo(u->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) u->status = code, u->headers_done = 1;
        return bytes;
    }
    size_t k = bytes;
    while (k && (p[k - 1] == '\r' || p[k - 1] == '\n')) k--;
    append(&u->resp_headers, &u->hlen, &u->hcap, p, k);
    append(&u->resp_headers, &u->hlen, &u->hcap, "\n", 1);
    if (k > 13 && !strncasecmp(p, "Content-Type:", 13)) {
        const char *v = p + 13;
        while (*v == ' ' && v < p + k) v++;
        size_t m = (size_t)(p + k - v) < sizeof u->content_type - 1 ? (size_t)(p + k - v) : sizeof u->content_type - 1;
        memcpy(u->content_type, v, m);
        u->content_type[m] = 0;
    }
    return bytes;
}

// One connection cache (and DNS and TLS sessions) for every exchange of the process: a request reuses a kept-alive
// connection to its upstream instead of paying a new TCP and TLS handshake. The share is locked per kind of data.
static int on_progress(void *ctx, curl_off_t dl_total, curl_off_t dl_now, curl_off_t ul_total, curl_off_t ul_now) {
    (void)dl_total, (void)dl_now, (void)ul_total;
    if (ul_now > 0) ((Upstream *)ctx)->sent = 1;
    return 0;
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLSH *g_share;
static pthread_mutex_t g_share_mu[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data what, curl_lock_access access, void *ctx) {
    (void)h, (void)access, (void)ctx;
    pthread_mutex_lock(&g_share_mu[what]);
}

static void share_unlock(CURL *h, curl_lock_data what, void *ctx) {
    (void)h, (void)ctx;
    pthread_mutex_unlock(&g_share_mu[what]);
}

static void curl_init_once(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&g_share_mu[i], NULL);
    g_share = curl_share_init();
    curl_share_setopt(g_share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(g_share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

Upstream *upstream_start(const UpstreamRequest *r) {
    pthread_once(&g_curl_once, curl_init_once);
    Upstream *u = ld_xcalloc(1, sizeof *u);
    u->max_bytes = r->max_bytes ? r->max_bytes : (size_t)16 << 20;
    u->started = ld_time_s();
    u->header_timeout_s = r->header_timeout_s > 0 ? r->header_timeout_s : r->timeout_s;
    u->abort = r->abort;
    u->easy = curl_easy_init();
    u->multi = curl_multi_init();
    CURL *e = u->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, u->error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, u);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->connect_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  // relayed decoded: the client gets what it would from the service
    u->headers = curl_slist_append(u->headers, "Expect:");  // no 100-continue round trip
    if (r->body) {
        u->headers = curl_slist_append(u->headers, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, r->body);  // a copy: the caller's body may go before the exchange ends
    }
    if (r->auth) u->headers = curl_slist_append(u->headers, r->auth);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, u->headers);
    curl_easy_setopt(e, CURLOPT_SHARE, g_share);
    curl_multi_add_handle(u->multi, e);
    return u;
}

// One round of the transfer: waits up to max_wait_s for the socket, then moves what is ready.
static void step(Upstream *u, double max_wait_s) {
    if (u->abort && __atomic_load_n(u->abort, __ATOMIC_ACQUIRE)) {  // ends it here: freeing it aborts the transfer
        u->done = u->failed = 1;
        snprintf(u->error, sizeof u->error, "cancelled: the proxy is stopping");
        return;
    }
    int running = 0, ms = (int)(max_wait_s * 1000);
    curl_multi_perform(u->multi, &running);
    if (running && ms > 0) {
        curl_multi_poll(u->multi, NULL, 0, ms, NULL);
        curl_multi_perform(u->multi, &running);
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(u->multi, &left)))
        if (m->msg == CURLMSG_DONE) {
            u->done = 1;
            if (m->data.result != CURLE_OK) {
                u->failed = 1;
                if (u->too_big)
                    snprintf(u->error, sizeof u->error, "the reply is larger than %zu bytes", u->max_bytes);
                else if (!u->error[0])
                    snprintf(u->error, sizeof u->error, "%s", curl_easy_strerror(m->data.result));
            } else if (!u->status) {
                curl_easy_getinfo(u->easy, CURLINFO_RESPONSE_CODE, &u->status);
            }
            u->headers_done = 1;
        }
}

int upstream_wait_headers(Upstream *u) {
    while (!u->headers_done && !u->done) {
        if (ld_time_s() - u->started > u->header_timeout_s) {  // ends it here: the caller frees it, which aborts the transfer
            u->done = u->failed = 1;
            snprintf(u->error, sizeof u->error, "no answer within %.1f s", u->header_timeout_s);
            return -1;
        }
        step(u, 0.05);
    }
    return u->failed && !u->status ? -1 : 0;
}

int upstream_pump(Upstream *u, double max_wait_s) {
    size_t before = u->len;
    double until = ld_time_s() + max_wait_s;
    while (!u->done && u->len == before) {
        double left = until - ld_time_s();
        if (left <= 0) break;
        step(u, left < 0.05 ? left : 0.05);
    }
    return !u->done;
}

int upstream_wait_all(Upstream *u) {
    while (!u->done) step(u, 0.05);
    return u->failed ? -1 : 0;
}

long upstream_status(const Upstream *u) { return u->status; }
const char *upstream_content_type(const Upstream *u) { return u->content_type; }
int upstream_done(const Upstream *u) { return u->done; }
const char *upstream_headers(const Upstream *u) { return u->resp_headers ? u->resp_headers : ""; }

int upstream_unsent(const Upstream *u) {
    long sent = 0;  // the request's bytes issued, as curl counts them (after the fact), or the upload's progress
    curl_easy_getinfo(u->easy, CURLINFO_REQUEST_SIZE, &sent);
    return u->failed && !u->status && !sent && !u->sent;
}
int upstream_failed(const Upstream *u) { return u->failed; }
const char *upstream_error(const Upstream *u) { return u->error[0] ? u->error : "no error"; }
double upstream_elapsed_s(const Upstream *u) { return ld_time_s() - u->started; }

const char *upstream_header(const Upstream *u, const char *name) {
    size_t n = strlen(name);
    for (const char *l = u->resp_headers; l && *l;) {
        const char *end = strchr(l, '\n');
        if (!strncasecmp(l, name, n) && l[n] == ':') {
            static __thread char value[256];  // per thread: the caller reads it before its next call
            const char *v = l + n + 1;
            while (*v == ' ') v++;
            size_t m = (size_t)(end - v) < sizeof value - 1 ? (size_t)(end - v) : sizeof value - 1;
            memcpy(value, v, m);
            value[m] = 0;
            return value;
        }
        l = end + 1;
    }
    return NULL;
}

const char *upstream_body(const Upstream *u, size_t *len) {
    *len = u->len;
    return u->body ? u->body : "";
}

void upstream_free(Upstream *u) {
    if (!u) return;
    curl_multi_remove_handle(u->multi, u->easy);
    curl_easy_cleanup(u->easy);
    curl_multi_cleanup(u->multi);
    curl_slist_free_all(u->headers);
    free(u->body), free(u->resp_headers), free(u);
}
