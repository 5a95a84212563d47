// defines: `llamaduo proxy` — one OpenAI-compatible endpoint in front of the service LLM and the migrated student.
// Per route (the model name a client sends), a mode: forward to the service, shadow (forward, and the student
// answers the same request in the background; both recorded), canary (a share answered by the student), or local
// (the student only). With failover, a service that fails (5xx, 429 past the retries, a timeout, a refused or reset
// connection) or whose circuit breaker is open is answered for by the student, in the same format; a response
// header says who answered. Forwarded pairs are captured (sampled, scrubbed) in SQLite for `llamaduo capture
// export`. /metrics is Prometheus text, /health the state. Keys come from the environment or the client, and
// are never stored or logged.
#pragma once
#include <cjson/cJSON.h>

#include "breaker.h"
#include "capture.h"
#include "privacy.h"

#define PROXY_MAX_ROUTES 32

typedef enum { MODE_FORWARD, MODE_SHADOW, MODE_CANARY, MODE_LOCAL } RouteMode;
extern const char *const k_route_modes[4];

typedef struct {
    const char *model;  // the model name clients send; "*": any other
    RouteMode mode;
    double share;  // canary: the student's share of requests
    int failover;
} Route;

typedef struct {
    // proxy:
    const char *host;
    int port, max_connections, per_client;
    double header_timeout_s, body_timeout_s, drain_s;
    int max_body, max_in_flight;
    const char *api_key_env;  // the proxy's own clients must send this key
    // service:
    const char *service_url, *service_key_env;
    int forward_client_key, max_attempts;
    double connect_timeout_s, first_byte_timeout_s, timeout_s, retry_after_max_s;
    // student:
    const char *student_url, *student_model, *student_adapter, *student_device, *student_name, *student_log;
    int student_parallel, student_ctx;
    double student_timeout_s;
    // routes, breaker, capture, shadow
    Route routes[PROXY_MAX_ROUTES];
    int n_routes;
    int breaker_failures;
    double breaker_window_s, breaker_cooldown_s;
    int capture;
    const char *capture_db;
    double capture_sample;
    int shadow_workers, shadow_queue;
    PrivacyConfig privacy;  // capture scrubbing: secrets always, personal data when privacy is enabled
    const cJSON *routes_list;
    cJSON *root;  // the config's tree, which the strings point into
} ProxyConfig;

// Reads and checks the whole config (every key, the routes, the key variables); -1 with an error naming the key.
int proxy_config_load(const char *path, ProxyConfig *c);
int proxy_config_parse(cJSON *root, const char *path, ProxyConfig *c);  // takes root (proxy_config_free frees it)
void proxy_config_free(ProxyConfig *c);

// Runs the proxy until SIGTERM or SIGINT: starts the student when it is a model to serve (self_exe serves it),
// listens, and on the signal drains requests in flight for drain_s. 0 after a clean stop, -1 with an error.
int proxy_run(const ProxyConfig *c, const char *config_path, const char *self_exe);
