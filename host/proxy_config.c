// The proxy's config: each section a table (base/options.h), so every key is checked, and named in its errors.
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "options.h"
#include "proxy.h"
#include "util.h"

const char *const k_route_modes[4] = {"forward", "shadow", "canary", "local"};

#define C(field) offsetof(ProxyConfig, field)
static const OptionSpec k_listen_options[] = {
    {"host", OPT_STR, C(host), 0, 0, "127.0.0.1", NULL, "the address to listen on (IPv4)"},
    {"port", OPT_INT, C(port), 0, 65535, "8090", NULL, "the port (0: any free one, said on stderr)"},
    {"api_key_env", OPT_STR, C(api_key_env), 0, 0, NULL, NULL, "clients must send 'Authorization: Bearer' with the key in this variable"},
    {"max_body", OPT_INT, C(max_body), 1024, 1 << 30, "1048576", NULL, "a request body's bytes at most (413 past it)"},
    {"max_connections", OPT_INT, C(max_connections), 1, 65536, "1024", NULL, "open connections in all (a thread each)"},
    {"max_in_flight", OPT_INT, C(max_in_flight), 1, 65536, "512", NULL, "requests being answered at once; past it 429"},
    {"max_connections_per_client", OPT_INT, C(per_client), 1, 65536, "256", NULL, "open connections from one address"},
    {"header_timeout_s", OPT_NUM, C(header_timeout_s), 0.1, 3600, "10", NULL, "a request's line and headers within this"},
    {"body_timeout_s", OPT_NUM, C(body_timeout_s), 0.1, 3600, "30", NULL, "its body within this"},
    {"drain_s", OPT_NUM, C(drain_s), 0, 86400, "30", NULL, "on SIGTERM, how long requests in flight may finish"},
    {NULL}};
static const OptionSpec k_service_options[] = {
    {"base_url", OPT_STR, C(service_url), 0, 0, NULL, NULL, "the service's OpenAI-compatible /v1 URL", NULL, 1},
    {"api_key_env", OPT_STR, C(service_key_env), 0, 0, NULL, NULL, "the NAME of the variable with the service key"},
    {"forward_client_key", OPT_BOOL, C(forward_client_key), 0, 1, "0", NULL, "send the client's own bearer token to the service"},
    {"connect_timeout_s", OPT_NUM, C(connect_timeout_s), 0.01, 600, "3", NULL, "connecting at most"},
    {"first_byte_timeout_s", OPT_NUM, C(first_byte_timeout_s), 0.01, 3600, "30", NULL, "a stream's first bytes at most this long after sending"},
    {"timeout_s", OPT_NUM, C(timeout_s), 0.1, 86400, "600", NULL, "a whole answer (a stream too) at most"},
    {"max_attempts", OPT_INT, C(max_attempts), 1, 10, "2", NULL, "tries of one request on 429, 5xx or no connection (not after a timeout)"},
    {"retry_after_max_s", OPT_NUM, C(retry_after_max_s), 0, 600, "2", NULL, "the longest Retry-After waited before trying again"},
    {NULL}};
static const OptionSpec k_student_options[] = {
    {"base_url", OPT_STR, C(student_url), 0, 0, NULL, NULL, "a running `llamaduo serve` (its /v1 URL)"},
    {"model", OPT_STR, C(student_model), 0, 0, NULL, NULL, "or a model to serve: GGUF or HF directory"},
    {"adapter", OPT_STR, C(student_adapter), 0, 0, NULL, NULL, "its LoRA adapter directory"},
    {"name", OPT_STR, C(student_name), 0, 0, "student", NULL, "the model name the student answers as"},
    {"parallel", OPT_INT, C(student_parallel), 1, 1024, "8", NULL, "sequences decoded together"},
    {"ctx", OPT_INT, C(student_ctx), 16, 1 << 20, "2048", NULL, "tokens per sequence"},
    {"device", OPT_CHOICE, C(student_device), 0, 0, "auto", "auto|cuda|cpu", "where it runs"},
    {"log", OPT_STR, C(student_log), 0, 0, "proxy-student.log", NULL, "the served student's log"},
    {"timeout_s", OPT_NUM, C(student_timeout_s), 0.1, 86400, "300", NULL, "a whole answer from the student at most"},
    {NULL}};
static const OptionSpec k_breaker_options[] = {
    {"failures", OPT_INT, C(breaker_failures), 1, 1000000, "5", NULL, "failed service requests that open the breaker"},
    {"window_s", OPT_NUM, C(breaker_window_s), 0.1, 86400, "30", NULL, "within this many seconds"},
    {"cooldown_s", OPT_NUM, C(breaker_cooldown_s), 0.01, 86400, "15", NULL, "open this long, then one request probes the service"},
    {NULL}};
static const OptionSpec k_capture_options[] = {
    {"enabled", OPT_BOOL, C(capture), 0, 1, "1", NULL, "store forwarded pairs (false: nothing is stored)"},
    {"db", OPT_STR, C(capture_db), 0, 0, "proxy-capture.sqlite", NULL, "the SQLite file they go to"},
    {"sample", OPT_NUM, C(capture_sample), 0, 1, "1", NULL, "the share of forwarded pairs kept"},
    {NULL}};
static const OptionSpec k_shadow_options[] = {
    {"workers", OPT_INT, C(shadow_workers), 1, 256, "2", NULL, "student requests in flight for shadowing"},
    {"queue", OPT_INT, C(shadow_queue), 0, 1 << 20, "256", NULL, "shadow requests waiting; past it they are dropped (counted)"},
    {NULL}};
#undef C

typedef struct {
    const char *model, *mode;
    double share;
    int failover;
} RouteOptions;
#define R(field) offsetof(RouteOptions, field)
static const OptionSpec k_route_options[] = {
    {"model", OPT_STR, R(model), 0, 0, NULL, NULL, "the model name clients send (\"*\": any other)", NULL, 1},
    {"mode", OPT_CHOICE, R(mode), 0, 0, "forward", "forward|shadow|canary|local", "who answers"},
    {"share", OPT_NUM, R(share), 0, 1, "0", NULL, "canary: the student's share of requests"},
    {"failover", OPT_BOOL, R(failover), 0, 1, "0", NULL, "the student answers when the service fails"},
    {NULL}};
#undef R

static int read_routes(ProxyConfig *c, const cJSON *list, const char *path) {
    if (!list) {  // none given: everything is forwarded
        c->routes[0] = (Route){.model = "*", .mode = MODE_FORWARD};
        c->n_routes = 1;
        return 0;
    }
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) < 1 || cJSON_GetArraySize(list) > PROXY_MAX_ROUTES) {
        ld_set_error("%s: 'routes' must be a list of 1 to %d routes ({model, mode, share, failover})", path, PROXY_MAX_ROUTES);
        return -1;
    }
    for (const cJSON *e = list->child; e; e = e->next) {
        char where[32];
        snprintf(where, sizeof where, "routes[%d]", c->n_routes);
        RouteOptions o;
        options_defaults(k_route_options, &o);
        if (options_from_json(k_route_options, &o, e, where, path)) return -1;
        Route *r = &c->routes[c->n_routes];
        *r = (Route){.model = o.model, .share = o.share, .failover = o.failover};
        while (strcmp(k_route_modes[r->mode], o.mode)) r->mode++;
        for (int i = 0; i < c->n_routes; i++)
            if (!strcmp(c->routes[i].model, r->model)) {
                ld_set_error("%s: %s: a second route for model '%s'", path, where, r->model);
                return -1;
            }
        if (r->mode == MODE_CANARY && !cJSON_GetObjectItemCaseSensitive(e, "share")) {
            ld_set_error("%s: %s: a canary route needs 'share', the student's share of requests (0 to 1)", path, where);
            return -1;
        }
        if (r->mode != MODE_CANARY && cJSON_GetObjectItemCaseSensitive(e, "share")) {
            ld_set_error("%s: %s: 'share' is for mode canary only", path, where);
            return -1;
        }
        c->n_routes++;
    }
    return 0;
}

static int needs_student(const ProxyConfig *c) {
    for (int i = 0; i < c->n_routes; i++)
        if (c->routes[i].mode != MODE_FORWARD || c->routes[i].failover) return 1;
    return 0;
}

static int check_keys(const ProxyConfig *c, const char *path) {
    const char *vars[2] = {c->api_key_env, c->service_key_env}, *keys[2] = {"proxy.api_key_env", "service.api_key_env"};
    for (int i = 0; i < 2; i++)
        if (vars[i] && (!getenv(vars[i]) || !*getenv(vars[i]))) {
            ld_set_error("%s: %s names %s, which is not set in the environment", path, keys[i], vars[i]);
            return -1;
        }
    if (c->forward_client_key && c->service_key_env) {
        ld_set_error("%s: give either service.api_key_env or service.forward_client_key, not both", path);
        return -1;
    }
    if (c->forward_client_key && c->api_key_env) {  // the client's one bearer token cannot be both
        ld_set_error("%s: service.forward_client_key sends the client's key to the service: proxy.api_key_env cannot also check it", path);
        return -1;
    }
    return 0;
}

int proxy_config_load(const char *path, ProxyConfig *c) {
    cJSON *root = config_load(path);
    if (!root) {
        memset(c, 0, sizeof *c);
        return -1;
    }
    return proxy_config_parse(root, path, c);
}

int proxy_config_parse(cJSON *root, const char *path, ProxyConfig *c) {
    memset(c, 0, sizeof *c);
    c->root = root;
    static const char *const top[] = {"proxy", "service", "student", "routes", "breaker", "capture", "shadow", "privacy", NULL};
    if (cfg_check_keys(c->root, "", top, path)) return -1;
    struct {
        const char *name;
        const OptionSpec *spec;
    } sections[] = {{"proxy", k_listen_options},   {"service", k_service_options}, {"student", k_student_options},
                    {"breaker", k_breaker_options}, {"capture", k_capture_options}, {"shadow", k_shadow_options}};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        options_defaults(sections[i].spec, c);
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(c->root, sections[i].name);
        if (!strcmp(sections[i].name, "service") && !sec) {
            ld_set_error("%s: missing 'service' section (service.base_url: the service LLM's OpenAI-compatible /v1 URL)", path);
            return -1;
        }
        if (options_from_json(sections[i].spec, c, sec, sections[i].name, path)) return -1;
    }
    if (read_routes(c, cJSON_GetObjectItemCaseSensitive(c->root, "routes"), path)) return -1;
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(c->root, "privacy");
    if (privacy_config_read(pv, path, pv != NULL, &c->privacy)) return -1;
    if (c->student_url && c->student_model) {
        ld_set_error("%s: give either student.base_url or student.model, not both", path);
        return -1;
    }
    if (!c->student_url && !c->student_model && needs_student(c)) {
        ld_set_error("%s: a route answers with the student: give student.base_url (a running llamaduo serve) or student.model (to serve)",
                     path);
        return -1;
    }
    for (int i = 0; i < c->n_routes; i++)
        if (c->routes[i].mode == MODE_SHADOW && !c->capture) {  // both answers are kept in the store, or nowhere
            ld_set_error("%s: routes[%d] shadows, which records both answers: it needs capture.enabled", path, i);
            return -1;
        }
    const char *paths[2] = {c->student_model, c->student_adapter}, *names[2] = {"student.model", "student.adapter"};
    for (int i = 0; i < 2; i++)
        if (paths[i] && !ld_file_exists(paths[i]) && !ld_is_dir(paths[i])) {
            ld_set_error("%s: %s: %s does not exist", path, names[i], paths[i]);
            return -1;
        }
    return check_keys(c, path);
}

void proxy_config_free(ProxyConfig *c) {
    cJSON_Delete(c->root);
    c->root = NULL;
}
