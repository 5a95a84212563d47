// The service-LLM client against the local fault server with a fixed latency: requests per window achieved
// at a concurrency against the configured limit, and the client's own CPU time per request.
// Usage: bench_client BASE_URL [--requests N] [--concurrency C] [--rpm R] [--window S]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "llm_client.h"
#include "util.h"

static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_client BASE_URL [--requests N] [--concurrency C] [--rpm R] [--window S]\n");
        return 2;
    }
    int n = 600, conc = 64, rpm = 600;
    double window = 60;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--requests"))
            n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency"))
            conc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rpm"))
            rpm = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--window"))
            window = atof(argv[i + 1]);
    }
    ProviderConfig p = {.wire = WIRE_OPENAI, .base_url = argv[1], .model = "bench", .temperature = 0, .max_tokens = 16};
    ClientLimits l = client_limits_default();
    l.concurrency = conc;
    l.rpm = rpm;
    l.window_s = window;
    l.use_cache = 0;
    LlmJob *jobs = calloc((size_t)n, sizeof(LlmJob));
    LlmMessage *msgs = calloc((size_t)n, sizeof(LlmMessage));
    char(*texts)[64] = calloc((size_t)n, 64);
    for (int i = 0; i < n; i++) {
        snprintf(texts[i], 64, "bench request %d", i);
        msgs[i] = (LlmMessage){"user", texts[i]};
        jobs[i].req = (LlmRequest){.messages = &msgs[i], .n_messages = 1};
    }
    double c0 = cpu_s();
    ClientStats st;
    if (llm_run(&p, &l, NULL, jobs, n, NULL, NULL, &st)) {
        fprintf(stderr, "%s\n", ld_last_error());
        return 1;
    }
    double cpu = cpu_s() - c0;
    double achieved = n / st.wall_s * window;  // requests are paced evenly, so the whole run is steady state
    printf(
        "{\"requests\": %d, \"concurrency\": %d, \"limit_per_window\": %d, \"window_s\": %g, \"wall_s\": %.2f, "
        "\"achieved_per_window\": %.1f, \"share_of_limit\": %.3f, \"busiest_window_sent\": %d, \"failures\": %ld, "
        "\"client_cpu_ms_per_request\": %.3f}\n",
        n, conc, rpm, window, st.wall_s, achieved, achieved / rpm, st.busiest_window, st.failures, cpu * 1000 / n);
    for (int i = 0; i < n; i++) llm_job_clear(&jobs[i]);
    free(jobs), free(msgs), free(texts);
    return 0;
}
