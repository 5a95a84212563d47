// defines: a circuit breaker for the service behind the proxy. Closed, every request goes to the service; after
// `failures` failed requests within `window_s` seconds it opens, and for `cooldown_s` none does (they fail over at
// once); then it half-opens: one request probes the service, and its outcome closes the breaker or opens it again.
// Plain state with the time passed in: the caller holds the lock.
#pragma once

typedef enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } BreakerState;

typedef struct {
    int failures;  // this many within the window open it
    double window_s, cooldown_s;
    BreakerState state;
    double opened_at;
    int probing;  // half-open: the probe is out
    double *fail_times;  // the last `failures` failures' times, a ring
    int n_fail, next_fail;
    long times_opened;
} Breaker;

void breaker_init(Breaker *b, int failures, double window_s, double cooldown_s);
void breaker_free(Breaker *b);
// May this request go to the service? 1 yes (half-open: it is the probe), 0 no (the breaker is open). Every 1
// must be followed by a breaker_result.
int breaker_allow(Breaker *b, double now);
void breaker_result(Breaker *b, int ok, double now);
const char *breaker_state_name(BreakerState s);
