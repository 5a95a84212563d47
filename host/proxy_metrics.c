#include "proxy_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *const k_answerers[ANSWERERS] = {"service", "student", "none"};
static const char *const k_failover_reasons[FAILOVER_REASONS] = {"error", "status", "breaker"};
static const double k_bounds[LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

void proxy_metrics_init(ProxyMetrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void proxy_metrics_request(ProxyMetrics *m, int route, Answerer by, int status, double seconds) {
    int cls = status >= 100 && status < 600 ? status / 100 - 1 : 5;
    pthread_mutex_lock(&m->mu);
    m->requests[route][by][cls]++;
    for (int b = 0; b < LATENCY_BUCKETS; b++)
        if (seconds <= k_bounds[b]) m->latency[by][b]++;
    m->latency_sum[by] += seconds, m->latency_count[by]++;
    pthread_mutex_unlock(&m->mu);
}

void proxy_metrics_add(ProxyMetrics *m, long *counter, long n) {
    pthread_mutex_lock(&m->mu);
    *counter += n;
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *s;
    size_t len, cap;
} Text;

static void put(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->s = ld_xrealloc(t->s, t->cap = (t->cap + (size_t)n + 1) * 2);
    }
}

// A label value as Prometheus wants it: backslash, quote and newline escaped.
static void put_label(Text *t, const char *v) {
    for (; *v; v++) put(t, "%s", *v == '"' ? "\\\"" : *v == '\\' ? "\\\\" : *v == '\n' ? "\\n" : (char[2]){*v, 0});
}

static void put_route(Text *t, const ProxyConfig *c, int r) {
    put(t, "route=\"");
    put_label(t, c->routes[r].model);
    put(t, "\",mode=\"%s\"", k_route_modes[c->routes[r].mode]);
}

char *proxy_metrics_text(ProxyMetrics *m, const ProxyConfig *c, BreakerState breaker, long times_opened) {
    static const char *const classes[6] = {"1xx", "2xx", "3xx", "4xx", "5xx", "none"};
    Text t = {ld_xmalloc(4096), 0, 4096};
    t.s[0] = 0;
    pthread_mutex_lock(&m->mu);
    put(&t, "# HELP llamaduo_proxy_requests_total Requests answered, by route, mode, who answered and status class.\n"
            "# TYPE llamaduo_proxy_requests_total counter\n");
    for (int r = 0; r < c->n_routes; r++)
        for (int a = 0; a < ANSWERERS; a++)
            for (int k = 0; k < 6; k++)
                if (m->requests[r][a][k] || (a == BY_SERVICE && k == 1)) {
                    put(&t, "llamaduo_proxy_requests_total{");
                    put_route(&t, c, r);
                    put(&t, ",answered_by=\"%s\",code=\"%s\"} %ld\n", k_answerers[a], classes[k], m->requests[r][a][k]);
                }
    put(&t, "# HELP llamaduo_proxy_request_seconds Time from a request's body to its whole answer, by who answered.\n"
            "# TYPE llamaduo_proxy_request_seconds histogram\n");
    for (int a = 0; a < ANSWERERS; a++) {
        for (int b = 0; b < LATENCY_BUCKETS; b++)
            put(&t, "llamaduo_proxy_request_seconds_bucket{answered_by=\"%s\",le=\"%g\"} %ld\n", k_answerers[a], k_bounds[b], m->latency[a][b]);
        put(&t, "llamaduo_proxy_request_seconds_bucket{answered_by=\"%s\",le=\"+Inf\"} %ld\n", k_answerers[a], m->latency_count[a]);
        put(&t, "llamaduo_proxy_request_seconds_sum{answered_by=\"%s\"} %.6f\n", k_answerers[a], m->latency_sum[a]);
        put(&t, "llamaduo_proxy_request_seconds_count{answered_by=\"%s\"} %ld\n", k_answerers[a], m->latency_count[a]);
    }
    put(&t, "# HELP llamaduo_proxy_failovers_total Requests the student answered because the service failed or its breaker was open.\n"
            "# TYPE llamaduo_proxy_failovers_total counter\n");
    for (int r = 0; r < c->n_routes; r++)
        for (int k = 0; k < FAILOVER_REASONS; k++) {
            put(&t, "llamaduo_proxy_failovers_total{");
            put_route(&t, c, r);
            put(&t, ",reason=\"%s\"} %ld\n", k_failover_reasons[k], m->failovers[r][k]);
        }
    put(&t, "# HELP llamaduo_proxy_breaker_state The service's circuit breaker: 0 closed, 1 open, 2 half-open.\n"
            "# TYPE llamaduo_proxy_breaker_state gauge\nllamaduo_proxy_breaker_state %d\n"
            "# HELP llamaduo_proxy_breaker_opened_total Times the breaker opened.\n"
            "# TYPE llamaduo_proxy_breaker_opened_total counter\nllamaduo_proxy_breaker_opened_total %ld\n",
        (int)breaker, times_opened);
    struct {
        const char *name, *help;
        long v;
    } plain[] = {{"retries_total", "Service requests sent again after a 429, a 5xx or no connection.", m->retries},
                 {"captured_total", "Forwarded pairs stored in the capture store.", m->captured},
                 {"capture_errors_total", "Pairs that could not be stored (or scrubbed).", m->capture_errors},
                 {"shadow_answered_total", "Shadow requests the student answered.", m->shadow_ok},
                 {"shadow_failed_total", "Shadow requests the student failed.", m->shadow_failed},
                 {"shadow_dropped_total", "Shadow requests dropped because the shadow queue was full.", m->shadow_dropped},
                 {"canary_fallbacks_total", "Canary requests the student failed, answered by the service instead.", m->student_fallbacks},
                 {"in_flight", "Requests being answered now.", m->in_flight}};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        put(&t, "# HELP llamaduo_proxy_%s %s\n# TYPE llamaduo_proxy_%s %s\nllamaduo_proxy_%s %ld\n", plain[i].name, plain[i].help, plain[i].name,
            strstr(plain[i].name, "_total") ? "counter" : "gauge", plain[i].name, plain[i].v);
    pthread_mutex_unlock(&m->mu);
    return t.s;
}
