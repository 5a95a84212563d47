// defines: the HTTP layer `llamaduo serve` and `llamaduo proxy` share (libmicrohttpd): the listening daemon, its
// connection limits (in all, and per client address, kept under the descriptor limit), the deadlines MHD does not
// keep (a connection's request headers, then its body), rate-limited library messages, OpenAI-style JSON and error
// answers, and the bearer-key check. The caller's handlers see every request; this layer only watches the phases.
#pragma once
#include <microhttpd.h>

#include "openai_api.h"

typedef struct {
    const char *who;  // "serve", "proxy": the prefix of its console lines
    const char *host;  // an IPv4 address
    int port;  // 0: any free one (http_port says which)
    int threads;  // event-loop threads (handlers never block; connections are suspended); 0: a thread per connection
    int max_connections, per_client;
    double header_timeout, body_timeout;  // seconds for a request's line and headers, then for its body
    double idle_timeout;  // a connection making no progress at all is closed after this (0: the longer of the two)
    MHD_AccessHandlerCallback on_request;  // called with cls
    MHD_RequestCompletedCallback on_completed;  // may be NULL
    void *cls;
} HttpOptions;

typedef struct HttpServer HttpServer;

// Listening, or NULL with an error (the address, or the port in use). max_connections may be lowered to fit the
// descriptor limit (said on stderr).
HttpServer *http_start(HttpOptions o);
unsigned http_port(const HttpServer *h);
// Open now on the server that accepted c (from a handler: the server's own handle may not be stored yet).
int http_connections(struct MHD_Connection *c);
int http_max_connections(const HttpServer *h);  // as fitted to the descriptor limit
// Stops accepting connections (those open go on); then http_stop ends the rest and frees h.
void http_quiesce(HttpServer *h);
void http_stop(HttpServer *h);

// What a server answers: a path (one method each), and whether the caller's key is required there.
typedef struct {
    const char *path, *method;
    int needs_key;
} HttpRoute;
// 0 when url and method name one of routes (ended by a {NULL} row) and the bearer key is right where it is
// needed (key NULL: none is); else *e is the 404, 405 or 401 to send.
int http_route_check(struct MHD_Connection *c, const char *url, const char *method, const HttpRoute *routes, const char *key, ApiError *e);

// A request body arriving in pieces: past max bytes it is read and dropped (too_big), to be answered 413 once it
// is all in (a client still sending when the connection closed would see a reset, not the answer).
typedef struct {
    char *data;  // NUL-terminated
    size_t len, cap;
    int too_big;
} HttpBody;
void http_body_add(HttpBody *b, const char *piece, size_t n, size_t max);

enum MHD_Result http_send_json(struct MHD_Connection *c, int status, char *json);  // takes json
enum MHD_Result http_send_error(struct MHD_Connection *c, const ApiError *e);
// 'Authorization: Bearer <key>' equal to key (compared in constant time); key NULL: anyone may call.
int http_bearer_ok(struct MHD_Connection *c, const char *key);
// The bearer token a request carries (points into MHD's memory, valid during the request), or NULL.
const char *http_bearer(struct MHD_Connection *c);
