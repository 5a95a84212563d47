// defines: the proxy's counters and latency histograms, printed in the Prometheus text format for /metrics.
// Labels stay bounded: routes come from the config, the rest are fixed sets.
#pragma once
#include <pthread.h>

#include "proxy.h"

typedef enum { BY_SERVICE, BY_STUDENT, BY_NONE, ANSWERERS } Answerer;
extern const char *const k_answerers[ANSWERERS];
typedef enum { FAILOVER_ERROR, FAILOVER_STATUS, FAILOVER_BREAKER, FAILOVER_REASONS } FailoverReason;
#define LATENCY_BUCKETS 14

typedef struct {
    pthread_mutex_t mu;
    long requests[PROXY_MAX_ROUTES][ANSWERERS][6];  // by route, answerer and status class (1xx..5xx, none)
    long failovers[PROXY_MAX_ROUTES][FAILOVER_REASONS];
    long latency[ANSWERERS][LATENCY_BUCKETS];  // cumulative counts per upper bound
    double latency_sum[ANSWERERS];
    long latency_count[ANSWERERS];
    long retries, captured, capture_errors, shadow_ok, shadow_failed, shadow_dropped, student_fallbacks, in_flight;
} ProxyMetrics;

void proxy_metrics_init(ProxyMetrics *m);
void proxy_metrics_request(ProxyMetrics *m, int route, Answerer by, int status, double seconds);
void proxy_metrics_add(ProxyMetrics *m, long *counter, long n);  // a plain counter, under the lock
// The whole text: routes names the route label, breaker its state and how often it opened.
char *proxy_metrics_text(ProxyMetrics *m, const ProxyConfig *c, BreakerState breaker, long times_opened);
