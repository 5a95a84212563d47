#define _GNU_SOURCE
#include "http_server.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

// One TCP connection from accept to close (MHD's socket context), for the deadlines MHD does not keep: its
// timeout is reset by every byte, so a client sending a header byte every few seconds would hold it forever.
typedef enum { PHASE_HEADERS, PHASE_BODY, PHASE_ANSWER, PHASE_CLOSING } ConnPhase;
typedef struct Conn {
    struct HttpServer *server;  // that accepted it (a handler may run before http_start has returned the server)
    int fd;
    ConnPhase phase;
    double since;  // when the phase began (ld_time_s)
    struct Conn *prev, *next;
} Conn;

struct HttpServer {
    HttpOptions o;
    struct MHD_Daemon *d;
    MHD_socket quiesced;  // the listening socket once quiesced (ours to close)
    pthread_t reaper;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Conn *conns;
    int n_conns, reaper_exit;
};

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode what) {
    HttpServer *h = cls;
    Conn *k = *socket_context;
    pthread_mutex_lock(&h->mu);
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k = ld_xcalloc(1, sizeof *k);
        k->server = h, k->fd = ci ? ci->connect_fd : -1, k->phase = PHASE_HEADERS, k->since = ld_time_s();
        if ((k->next = h->conns)) k->next->prev = k;
        h->conns = k, h->n_conns++;
        *socket_context = k;
    } else if (k) {  // closed: MHD closes the socket after this returns, so the reaper never sees a reused fd
        if (k->prev)
            k->prev->next = k->next;
        else
            h->conns = k->next;
        if (k->next) k->next->prev = k->prev;
        h->n_conns--;
        free(k);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&h->mu);
}

static void conn_phase(HttpServer *h, struct MHD_Connection *c, ConnPhase phase) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    Conn *k = ci ? ci->socket_context : NULL;
    if (!k) return;
    pthread_mutex_lock(&h->mu);
    if (k->phase != PHASE_CLOSING) k->phase = phase, k->since = ld_time_s();
    pthread_mutex_unlock(&h->mu);
}

// Past its deadline a connection's socket is shut down: MHD's event loop then reads the end of the stream and
// closes it as if the client had (the descriptor stays MHD's to close).
static void *reaper_main(void *arg) {
    HttpServer *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->reaper_exit) {
        double now = ld_time_s();
        for (Conn *k = h->conns; k; k = k->next) {
            double limit = k->phase == PHASE_HEADERS ? h->o.header_timeout : k->phase == PHASE_BODY ? h->o.body_timeout : 0;
            if (limit > 0 && now - k->since > limit) shutdown(k->fd, SHUT_RDWR), k->phase = PHASE_CLOSING;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&h->cv, &h->mu, &until);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

// The caller's handler, with the phases watched: the first call has the headers in (the body's deadline
// starts), a later one without upload data has the whole body (no deadline while the answer is made).
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
    HttpServer *h = cls;
    if (!*con_cls)
        conn_phase(h, c, PHASE_BODY);
    else if (!*upload_size)
        conn_phase(h, c, PHASE_ANSWER);
    return h->o.on_request(h->o.cls, c, url, method, version, upload, upload_size, con_cls);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    HttpServer *h = cls;
    if (h->o.on_completed) h->o.on_completed(h->o.cls, c, con_cls, why);
    conn_phase(h, c, PHASE_HEADERS);  // a kept-alive connection: the next request's headers are due
}

// MHD's messages, at most one a second: a client opening connections past its limit would otherwise write a
// line for each.
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static double last = -1;
    static long dropped;
    const HttpServer *h = cls;
    pthread_mutex_lock(&mu);
    double now = ld_time_s();
    if (last >= 0 && now - last < 1.0) {
        dropped++;
    } else {
        if (dropped) fprintf(stderr, "%s: (%ld more messages from the HTTP library in the last second)\n", h->o.who, dropped);
        fprintf(stderr, "%s: ", h->o.who);
        vfprintf(stderr, fmt, ap);
        last = now, dropped = 0;
    }
    pthread_mutex_unlock(&mu);
}

// Each connection holds a descriptor: the soft limit is raised as far as the hard one allows, and the
// connection limit kept under it with room for the model's files and the engine's.
static int fit_connection_limit(const char *who, int want) {
    struct rlimit rl;
    rlim_t reserve = 256, need = (rlim_t)want + reserve;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return want;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur >= need) return want;
    int fit = rl.rlim_cur > 2 * reserve ? (int)(rl.rlim_cur - reserve) : (int)(rl.rlim_cur / 2);
    fprintf(stderr, "%s: the descriptor limit is %lu: at most %d connections (not %d)\n", who, (unsigned long)rl.rlim_cur, fit, want);
    return fit;
}

HttpServer *http_start(HttpOptions o) {
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.host, &addr.sin_addr) != 1) {
        ld_set_error("--host %s: not an IPv4 address", o.host);
        return NULL;
    }
    HttpServer *h = ld_xcalloc(1, sizeof *h);
    o.max_connections = fit_connection_limit(o.who, o.max_connections);
    h->o = o, h->quiesced = MHD_INVALID_SOCKET;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    pthread_create(&h->reaper, NULL, reaper_main, h);
    // MHD's own timeout restarts with every byte and is off while a connection is suspended: it only ends
    // connections that stall outright (a client that stops reading its answer); the reaper keeps the deadlines
    // (a handler that waits, as the proxy's do on their upstream, must stay under it: MHD checks it when they return)
    double longer = o.header_timeout > o.body_timeout ? o.header_timeout : o.body_timeout;
    unsigned idle = (unsigned)ceil(o.idle_timeout > 0 ? o.idle_timeout : longer);
    unsigned flags = MHD_USE_ERROR_LOG |
                     (o.threads ? MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME : MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD);
    // a connection's buffers over 32 KiB are mapped apart and unmapped at close (smaller ones come from malloc,
    // whose arenas keep every page thousands of short-lived connections ever touched): memory stays flat
    struct MHD_OptionItem opts[16] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, h},
        {MHD_OPTION_SOCK_ADDR, 0, &addr},
        {MHD_OPTION_CONNECTION_LIMIT, o.max_connections, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, o.per_client, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, idle, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 << 10, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, h},
        {MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL},
        {o.threads ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, o.threads, NULL},  // (no pool with a thread per connection)
        {MHD_OPTION_END, 0, NULL}};
    h->d = MHD_start_daemon(flags, (uint16_t)o.port, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!h->d) {
        ld_set_error("cannot listen on %s:%d (in use, or not allowed)", o.host, o.port);
        http_stop(h);
        return NULL;
    }
    return h;
}

unsigned http_port(const HttpServer *h) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : (unsigned)h->o.port;
}

int http_connections(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    const Conn *k = ci ? ci->socket_context : NULL;
    if (!k) return 0;
    HttpServer *h = k->server;
    pthread_mutex_lock(&h->mu);
    int n = h->n_conns;
    pthread_mutex_unlock(&h->mu);
    return n;
}

int http_max_connections(const HttpServer *h) { return h->o.max_connections; }

void http_quiesce(HttpServer *h) {
    if (h->d && h->quiesced == MHD_INVALID_SOCKET) h->quiesced = MHD_quiesce_daemon(h->d);
}

void http_stop(HttpServer *h) {
    if (h->d) MHD_stop_daemon(h->d);
    if (h->quiesced != MHD_INVALID_SOCKET) close(h->quiesced);
    pthread_mutex_lock(&h->mu);
    h->reaper_exit = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->reaper, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

int http_route_check(struct MHD_Connection *c, const char *url, const char *method, const HttpRoute *routes, const char *key, ApiError *e) {
    const HttpRoute *path = routes;
    while (path->path && strcmp(path->path, url)) path++;
    if (!path->path)
        api_error_set(e, 404, "invalid_request_error", NULL, NULL, "no route %s %s", method, url);
    else if (strcmp(path->method, method))
        api_error_set(e, 405, "invalid_request_error", NULL, NULL, "%s is not allowed on %s", method, url);
    else if (path->needs_key && !http_bearer_ok(c, key))
        api_error_set(e, 401, "invalid_request_error", NULL, "invalid_api_key", "Incorrect or missing API key (send 'Authorization: Bearer <key>')");
    else
        return 0;
    return -1;
}

void http_body_add(HttpBody *b, const char *piece, size_t n, size_t max) {
    if (b->too_big || b->len + n > max) {
        b->too_big = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) b->data = ld_xrealloc(b->data, b->cap = (b->len + n + 1) * 2);
    memcpy(b->data + b->len, piece, n);
    b->len += n;
    b->data[b->len] = 0;
}

enum MHD_Result http_send_json(struct MHD_Connection *c, int status, char *json) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result http_send_error(struct MHD_Connection *c, const ApiError *e) { return http_send_json(c, e->status, api_error_json(e)); }

// The scheme's name is case-insensitive (RFC 7235), the spaces after it one or more.
const char *http_bearer(struct MHD_Connection *c) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return NULL;
    h += 7;
    while (*h == ' ') h++;
    return *h ? h : NULL;
}

int http_bearer_ok(struct MHD_Connection *c, const char *key) {
    if (!key) return 1;
    const char *k = http_bearer(c);
    if (!k) return 0;
    size_t a = strlen(k), b = strlen(key);
    unsigned diff = a != b;
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned)(k[i] ^ key[i]);  // constant time in the key
    return !diff;
}
