#include "breaker.h"

#include <stdlib.h>

#include "util.h"

void breaker_init(Breaker *b, int failures, double window_s, double cooldown_s) {
    *b = (Breaker){.failures = failures, .window_s = window_s, .cooldown_s = cooldown_s};
    b->fail_times = ld_xcalloc((size_t)failures, sizeof(double));
}

void breaker_free(Breaker *b) { free(b->fail_times), b->fail_times = NULL; }

static void trip(Breaker *b, double now) {
    b->state = BREAKER_OPEN, b->opened_at = now, b->probing = 0, b->n_fail = 0, b->times_opened++;
}

int breaker_allow(Breaker *b, double now) {
    if (b->state == BREAKER_OPEN && now - b->opened_at >= b->cooldown_s) b->state = BREAKER_HALF_OPEN, b->probing = 0;
    if (b->state == BREAKER_CLOSED) return 1;
    if (b->state == BREAKER_HALF_OPEN && !b->probing) return b->probing = 1;
    return 0;
}

void breaker_result(Breaker *b, int ok, double now) {
    if (b->state == BREAKER_HALF_OPEN) {  // the probe's answer decides (requests let through before it opened count too)
        if (ok)
            b->state = BREAKER_CLOSED, b->probing = 0, b->n_fail = 0;
        else
            trip(b, now);
        return;
    }
    if (ok || b->state == BREAKER_OPEN) return;  // a straggler from before it opened changes nothing
    b->fail_times[b->next_fail] = now;
    b->next_fail = (b->next_fail + 1) % b->failures;
    if (b->n_fail < b->failures) b->n_fail++;
    // the ring is full and its oldest (next to be overwritten) is within the window: that many happened in it
    if (b->n_fail == b->failures && now - b->fail_times[b->next_fail] <= b->window_s) trip(b, now);
}

const char *breaker_state_name(BreakerState s) { return s == BREAKER_CLOSED ? "closed" : s == BREAKER_OPEN ? "open" : "half_open"; }
