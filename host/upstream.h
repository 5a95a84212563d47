// defines: one HTTP exchange with an upstream server (the service LLM or the student), driven by its reader
// (libcurl's multi interface on one handle, no thread of its own): start it, pump it until the status line and
// headers are in, then take the body as it arrives (a stream relayed piece by piece) or wait for all of it. The
// whole body stays readable afterwards (for capture), up to a size cap. Nothing here knows what the bytes mean.
#pragma once
#include <stddef.h>

typedef struct Upstream Upstream;

typedef struct {
    const char *url;
    const char *body;  // POST body (NULL: GET)
    size_t body_len;
    const char *auth;  // an "Authorization: ..." header line, or NULL; never logged
    double connect_timeout_s, timeout_s;  // the connection; the whole exchange
    double header_timeout_s;  // the status line and headers at most this long after the start (0: timeout_s)
    size_t max_bytes;  // a longer body ends the exchange as failed
    const int *abort;  // when it reads non-zero (another thread sets it), every wait ends and the exchange fails
} UpstreamRequest;

Upstream *upstream_start(const UpstreamRequest *r);
// Pumps until the headers are in (0) or the exchange failed (-1: no connection, reset, a timeout; upstream_error
// says which).
int upstream_wait_headers(Upstream *u);
long upstream_status(const Upstream *u);  // the HTTP status (0 until known)
const char *upstream_content_type(const Upstream *u);  // "" until known
const char *upstream_header(const Upstream *u, const char *name);  // a response header's value, or NULL
// Pumps until new body bytes arrived, the exchange ended, or max_wait_s passed. Returns 1 while it goes on, 0 at
// its end (upstream_failed says how it ended).
int upstream_pump(Upstream *u, double max_wait_s);
int upstream_wait_all(Upstream *u);  // pumps to the end; 0 ok, -1 failed
int upstream_done(const Upstream *u);  // ended, well or not
// It failed before a byte of the request went out (no connection): sending it again cannot make it twice.
int upstream_unsent(const Upstream *u);
const char *upstream_headers(const Upstream *u);  // the response's header lines, "Name: value\n" each
int upstream_failed(const Upstream *u);  // the exchange broke (not an HTTP error status: that is a complete answer)
const char *upstream_error(const Upstream *u);  // why it failed ("Couldn't connect to server", ...)
// The body received so far (*len bytes, NUL-terminated); the caller's read position is its own.
const char *upstream_body(const Upstream *u, size_t *len);
double upstream_elapsed_s(const Upstream *u);
void upstream_free(Upstream *u);
