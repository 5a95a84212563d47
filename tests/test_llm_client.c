// The service-LLM client against tests/fault_server.py on 127.0.0.1: all three wire formats; every fault
// (429 with/without Retry-After, 500/503, resets, timeouts, truncated/invalid JSON, missing JSON) ends in a
// result or a recorded failure; Retry-After honoured; rate window and concurrency never exceeded; the cache
// answers a rerun without a single request; the budget stops new requests; the key never reaches disk. And a
// hostile service: Retry-After of a day (or inf, or a date) capped; usage claims of -1e6 or 1e30 tokens replaced
// by estimates (the budget holds); invalid UTF-8 dropped or repaired; a 200 MB reply aborted at the cap;
// unusable 200s paid for; a service that refuses every connection given up on after one request's attempts;
// synthesis replies off the contract asked again with a marker, and never a line of invalid UTF-8 written.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "llm_client.h"
#include "synth.h"
#include "test_util.h"
#include "util.h"

static char g_dir[256], g_log[300], g_base[64];
static pid_t g_server;
#define TEST_KEY "sk-llamaduo-TEST-KEY-7f3a9c"

static void start_server(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/llamaduo-client-%d", (int)getpid());
    mkdir(g_dir, 0755);
    char port_file[300];
    snprintf(port_file, sizeof port_file, "%s/port", g_dir);
    snprintf(g_log, sizeof g_log, "%s/server.jsonl", g_dir);
    g_server = fork();
    if (g_server == 0) {
        execlp("python3", "python3", LD_SOURCE "/tests/fault_server.py", "--port-file", port_file, "--log", g_log, "--slow", "3",
               "--expect-key-env", "LD_TEST_KEY", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && !ld_file_exists(port_file); i++) usleep(50000);
    char *port = ld_read_file(port_file, NULL);
    if (!port) {
        fprintf(stderr, "fault server did not start\n");
        exit(2);
    }
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%s", port);
    free(port);
}

static void stop_server(void) {
    kill(g_server, SIGTERM);
    waitpid(g_server, NULL, 0);
}

typedef struct {
    cJSON **e;
    int n;
} Log;

static Log read_log(void) {
    Log l = {0};
    char *s = ld_read_file(g_log, NULL);
    for (char *line = s ? strtok(s, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        l.e = ld_xrealloc(l.e, sizeof(cJSON *) * (size_t)(l.n + 1));
        l.e[l.n++] = cJSON_Parse(line);
    }
    free(s);
    return l;
}
static void free_log(Log *l) {
    for (int i = 0; i < l->n; i++) cJSON_Delete(l->e[i]);
    free(l->e);
}

static int g_done_calls;
static void on_done(void *ctx, LlmJob *j) {
    (void)ctx, (void)j;
    g_done_calls++;
}

static ProviderConfig provider(WireFormat w) {
    static char base[128];
    snprintf(base, sizeof base, "%s%s", g_base, w == WIRE_OPENAI ? "/v1" : "");
    return (ProviderConfig){.wire = w,
                            .base_url = base,
                            .model = "test-model",
                            .api_key_env = "LD_TEST_KEY",
                            .temperature = 0.2,
                            .max_tokens = 64,
                            .price_in_per_mtok = 2.5,
                            .price_out_per_mtok = 10};
}

static ClientLimits fast_limits(void) {
    ClientLimits l = client_limits_default();
    l.timeout_s = 1.5;
    l.backoff_base_s = 0.05;
    l.backoff_max_s = 0.2;
    l.max_attempts = 5;
    return l;
}

static void make_jobs(LlmJob *jobs, LlmMessage *msgs, char texts[][128], int n, const char *prefix, const char *const *faults) {
    for (int i = 0; i < n; i++) {
        snprintf(texts[i], 128, "%s request %d %s%s", prefix, i, faults && faults[i] ? "FAULTS:" : "",
                 faults && faults[i] ? faults[i] : "");
        msgs[2 * i] = (LlmMessage){"system", "You are a test."};
        msgs[2 * i + 1] = (LlmMessage){"user", texts[i]};
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].req = (LlmRequest){.messages = &msgs[2 * i], .n_messages = 2, .json_mode = 1};
    }
}

static void check_wires_and_faults(LlmCache *cache) {
    const char *faults[] = {
        NULL, "429", "429ra", "500,503", "reset", "trunc", "invalid", "slow", "nojson,nojson", "400", "500,500,500,500,500,500"};
    int n = sizeof faults / sizeof faults[0];
    for (int w = 0; w < 3; w++) {
        ProviderConfig p = provider((WireFormat)w);
        ClientLimits l = fast_limits();
        LlmJob jobs[16];
        LlmMessage msgs[32];
        char texts[16][128];
        char prefix[32];
        snprintf(prefix, sizeof prefix, "faults-%s", wire_name((WireFormat)w));
        make_jobs(jobs, msgs, texts, n, prefix, faults);
        g_done_calls = 0;
        ClientStats st;
        CHECK(llm_run(&p, &l, cache, jobs, n, on_done, NULL, &st) == 0, "%s: run failed: %s", wire_name(p.wire), ld_last_error());
        CHECK(g_done_calls == n, "%s: %d of %d jobs reported", wire_name(p.wire), g_done_calls, n);
        for (int i = 0; i < n; i++) {
            int should_fail = i >= n - 2;
            CHECK(jobs[i].status == (should_fail ? JOB_FAILED : JOB_OK), "%s job %d (%s): status %d, error %s", wire_name(p.wire), i,
                  faults[i] ? faults[i] : "none", jobs[i].status, jobs[i].error ? jobs[i].error : "");
            if (jobs[i].status == JOB_OK)
                CHECK(strstr(jobs[i].reply.text, "echo") && jobs[i].reply.completion_tokens == 7 && jobs[i].cost > 0,
                      "%s job %d: reply/usage not recorded", wire_name(p.wire), i);
        }
        CHECK(jobs[n - 2].attempts == 1 && jobs[n - 2].error && strstr(jobs[n - 2].error, "injected 400"),
              "%s: 400 must fail fast with the provider's message (attempts %d, %s)", wire_name(p.wire), jobs[n - 2].attempts,
              jobs[n - 2].error ? jobs[n - 2].error : "");
        CHECK(jobs[n - 1].attempts == l.max_attempts, "%s: persistent 500 tried %d times", wire_name(p.wire), jobs[n - 1].attempts);
        printf("%-9s: %d jobs, %ld requests, %ld retries, %ld failures, $%.6f; longest arrival-to-commit %.1f ms\n", wire_name(p.wire), n,
               st.requests_sent, st.retries, st.failures, st.cost_usd, st.commit_lag_max_s * 1e3);
        for (int i = 0; i < n; i++) llm_job_clear(&jobs[i]);
    }
    // Retry-After: the second attempt of the 429ra request came at least a second after the first
    Log lg = read_log();
    double first = -1;
    int checked = 0, key_bad = 0, answered_twice = 0;
    for (int i = 0; i < lg.n; i++) {
        cJSON *e = lg.e[i];
        if (!cJSON_IsTrue(cJSON_GetObjectItem(e, "key_ok"))) key_bad++;
        if (!strcmp(cJSON_GetObjectItem(e, "fault")->valuestring, "429ra"))
            first = cJSON_GetObjectItem(e, "t")->valuedouble;
        else if (first >= 0 && cJSON_GetObjectItem(e, "attempt")->valueint == 1) {
            for (int k = 0; k < i; k++)
                if (!strcmp(cJSON_GetObjectItem(lg.e[k], "hash")->valuestring, cJSON_GetObjectItem(e, "hash")->valuestring) &&
                    !strcmp(cJSON_GetObjectItem(lg.e[k], "fault")->valuestring, "429ra")) {
                    CHECK(cJSON_GetObjectItem(e, "t")->valuedouble - first >= 0.95, "Retry-After: 1 not honoured (%.2fs)",
                          cJSON_GetObjectItem(e, "t")->valuedouble - first);
                    checked++;
                }
        }
        // No request answered twice: a clean answer is never asked for again. (A timed-out "slow" answer or
        // a reply that failed validation is legitimately asked again.)
        for (int k = 0; k < i; k++)
            if (!strcmp(cJSON_GetObjectItem(e, "fault")->valuestring, "none") &&
                !strcmp(cJSON_GetObjectItem(lg.e[k], "fault")->valuestring, "none") &&
                !strcmp(cJSON_GetObjectItem(lg.e[k], "hash")->valuestring, cJSON_GetObjectItem(e, "hash")->valuestring))
                answered_twice++;
    }
    CHECK(checked == 3, "Retry-After checked on %d of 3 formats", checked);
    CHECK(key_bad == 0, "%d requests arrived without the right key header", key_bad);
    CHECK(answered_twice == 0, "%d requests answered twice", answered_twice);
    free_log(&lg);
}

static void check_cache_rerun(LlmCache *cache) {
    // the same requests again: every answer from the cache, not one request on the wire
    Log before = read_log();
    ProviderConfig p = provider(WIRE_OPENAI);
    ClientLimits l = fast_limits();
    const char *faults[] = {NULL, "429", "429ra", "500,503", "reset", "trunc", "invalid", "slow", "nojson,nojson"};
    int n = 9;
    LlmJob jobs[16];
    LlmMessage msgs[32];
    char texts[16][128];
    make_jobs(jobs, msgs, texts, n, "faults-openai", faults);
    ClientStats st;
    llm_run(&p, &l, cache, jobs, n, NULL, NULL, &st);
    Log after = read_log();
    CHECK(st.cache_hits == n && st.requests_sent == 0 && after.n == before.n, "rerun: %ld cache hits, %ld requests sent", st.cache_hits,
          st.requests_sent);
    CHECK(st.new_cost_usd == 0 && st.cost_usd > 0, "rerun: replayed replies keep their cost (%g) and cost nothing new (%g)", st.cost_usd,
          st.new_cost_usd);
    for (int i = 0; i < n; i++) {
        CHECK(jobs[i].status == JOB_OK && jobs[i].cached && strstr(jobs[i].reply.text, "echo"), "rerun job %d not from cache", i);
        llm_job_clear(&jobs[i]);
    }
    free_log(&before), free_log(&after);
}

static void check_rate_and_concurrency(void) {
    ProviderConfig p = provider(WIRE_ANTHROPIC);
    ClientLimits l = fast_limits();
    l.rpm = 8;
    l.window_s = 1.0;  // "per minute" shrunk to a second for the test
    l.concurrency = 3;
    l.use_cache = 0;
    int n = 24;
    LlmJob jobs[24];
    LlmMessage msgs[48];
    char texts[24][128];
    make_jobs(jobs, msgs, texts, n, "rate", NULL);
    Log before = read_log();
    double t0 = ld_time_s();
    ClientStats st;
    llm_run(&p, &l, NULL, jobs, n, NULL, NULL, &st);
    double dt = ld_time_s() - t0;
    Log lg = read_log();
    int worst = 0, max_inflight = 0;
    for (int i = before.n; i < lg.n; i++) {
        double t = cJSON_GetObjectItem(lg.e[i], "t")->valuedouble;
        int in_window = 0;
        for (int k = before.n; k < lg.n; k++) {
            double u = cJSON_GetObjectItem(lg.e[k], "t")->valuedouble;
            in_window += u >= t && u < t + l.window_s - 0.02;  // 20 ms for the server's own timestamp jitter
        }
        if (in_window > worst) worst = in_window;
        int inf = cJSON_GetObjectItem(lg.e[i], "inflight")->valueint;
        if (inf > max_inflight) max_inflight = inf;
    }
    printf("rate: %d requests in %.2fs at %d per %.0fs window: busiest window held %d, most in flight %d\n", n, dt, l.rpm, l.window_s,
           worst, max_inflight);
    CHECK(st.busiest_window <= l.rpm, "client sent %d requests within one window (limit %d)", st.busiest_window, l.rpm);
    CHECK(worst <= l.rpm, "rate window exceeded: %d requests within %.1fs (limit %d)", worst, l.window_s, l.rpm);
    CHECK(max_inflight <= l.concurrency, "concurrency exceeded: %d in flight (limit %d)", max_inflight, l.concurrency);
    CHECK(dt >= (double)(n - l.rpm) / l.rpm * l.window_s - 0.1, "finished too fast for the limit (%.2fs)", dt);
    for (int i = 0; i < n; i++) {
        CHECK(jobs[i].status == JOB_OK, "rate job %d failed", i);
        llm_job_clear(&jobs[i]);
    }
    free_log(&before), free_log(&lg);
}

static void check_token_limit(void) {
    ProviderConfig p = provider(WIRE_OPENAI);
    ClientLimits l = fast_limits();
    l.tpm = 300;  // each request is estimated at ~80 tokens (64 of them the reply's maximum): 3 per window
    l.window_s = 0.5;
    l.use_cache = 0;
    int n = 12;
    LlmJob jobs[12];
    LlmMessage msgs[24];
    char texts[12][128];
    make_jobs(jobs, msgs, texts, n, "tokens", NULL);
    ClientStats st;
    double t0 = ld_time_s();
    llm_run(&p, &l, NULL, jobs, n, NULL, NULL, &st);
    double dt = ld_time_s() - t0;
    printf("tokens: %d requests at %d tokens per %.1fs: busiest window held %ld tokens (%d requests), %.2fs\n", n, l.tpm, l.window_s,
           st.busiest_window_tokens, st.busiest_window, dt);
    CHECK(st.busiest_window_tokens <= l.tpm, "token window exceeded: %ld > %d", st.busiest_window_tokens, l.tpm);
    CHECK(dt >= 1.4, "12 requests at 3 per 0.5 s window finished in %.2fs", dt);
    for (int i = 0; i < n; i++) {
        CHECK(jobs[i].status == JOB_OK, "token-limited job %d failed", i);
        llm_job_clear(&jobs[i]);
    }
}

static void check_budget(void) {
    ProviderConfig p = provider(WIRE_GEMINI);
    p.price_in_per_mtok = 1e5;  // $0.1 per prompt token: the first replies exhaust the budget
    ClientLimits l = fast_limits();
    l.concurrency = 1;
    l.budget_usd = 1.0;
    l.use_cache = 0;
    int n = 10;
    LlmJob jobs[10];
    LlmMessage msgs[20];
    char texts[10][128];
    make_jobs(jobs, msgs, texts, n, "budget", NULL);
    ClientStats st;
    llm_run(&p, &l, NULL, jobs, n, NULL, NULL, &st);
    int ok = 0, skipped = 0;
    for (int i = 0; i < n; i++) {
        ok += jobs[i].status == JOB_OK;
        skipped += jobs[i].status == JOB_SKIPPED_BUDGET;
        llm_job_clear(&jobs[i]);
    }
    printf("budget: $%.2f cap: %d answered ($%.2f spent), %d skipped\n", l.budget_usd, ok, st.cost_usd, skipped);
    CHECK(ok >= 1 && skipped >= 1 && ok + skipped == n, "budget: %d ok, %d skipped", ok, skipped);
    CHECK(st.cost_usd - jobs[0].cost <= l.budget_usd + 1e-9 || ok == 1, "spent past the cap before stopping");
}

static void run_faults(ProviderConfig *p, ClientLimits *l, LlmCache *cache, const char *prefix, const char *const *faults, int n,
                       LlmJob *jobs, LlmMessage *msgs, char texts[][128], ClientStats *st) {
    make_jobs(jobs, msgs, texts, n, prefix, faults);
    CHECK(llm_run(p, l, cache, jobs, n, NULL, NULL, st) == 0, "%s: run failed: %s", prefix, ld_last_error());
}

static void check_retry_after_cap(void) {
    ProviderConfig p = provider(WIRE_OPENAI);
    ClientLimits l = fast_limits();
    l.use_cache = 0;
    const char *faults[] = {"ra86400", "radate", "rainf"};
    LlmJob jobs[3];
    LlmMessage msgs[6];
    char texts[3][128];
    ClientStats st;
    double t0 = ld_time_s();
    run_faults(&p, &l, NULL, "retry-after", faults, 3, jobs, msgs, texts, &st);
    double dt = ld_time_s() - t0;
    for (int i = 0; i < 2; i++)
        CHECK(jobs[i].status == JOB_FAILED && jobs[i].attempts == 1 && strstr(jobs[i].error, "Retry-After") &&
                  strstr(jobs[i].error, "retry_after_max_s"),
              "%s: a day's Retry-After must fail the request at once (status %d, %d attempts, %s)", faults[i], jobs[i].status,
              jobs[i].attempts, jobs[i].error ? jobs[i].error : "");
    CHECK(jobs[2].status == JOB_OK && jobs[2].attempts == 2, "Retry-After: inf is no delay to honour (status %d, %d attempts)",
          jobs[2].status, jobs[2].attempts);
    CHECK(dt < 10, "Retry-After cap: %.1fs", dt);
    for (int i = 0; i < 3; i++) llm_job_clear(&jobs[i]);
    // waiting it out, as configured, still ends at the stage deadline
    l.retry_after_wait = 1;
    l.deadline_s = 1.5;
    t0 = ld_time_s();
    run_faults(&p, &l, NULL, "retry-after-wait", faults, 1, jobs, msgs, texts, &st);
    dt = ld_time_s() - t0;
    CHECK(jobs[0].status == JOB_FAILED && strstr(jobs[0].error, "deadline") && dt < 5,
          "long_retry_after: wait must stop at the deadline (status %d, %.1fs, %s)", jobs[0].status, dt,
          jobs[0].error ? jobs[0].error : "");
    llm_job_clear(&jobs[0]);
    printf("retry-after: 86400 s and a date a day ahead fail at once, inf ignored, wait stops at the deadline\n");
}

static void check_usage_claims(void) {
    for (int w = 0; w < 3; w++) {
        ProviderConfig p = provider((WireFormat)w);
        ClientLimits l = fast_limits();
        l.use_cache = 0;
        const char *faults[] = {"usageneg", "usagehuge"};
        LlmJob jobs[2];
        LlmMessage msgs[4];
        char texts[2][128];
        ClientStats st;
        char prefix[40];
        snprintf(prefix, sizeof prefix, "usage-%s", wire_name(p.wire));
        run_faults(&p, &l, NULL, prefix, faults, 2, jobs, msgs, texts, &st);
        for (int i = 0; i < 2; i++)
            CHECK(jobs[i].status == JOB_OK && jobs[i].reply.usage_estimated && jobs[i].reply.prompt_tokens > 0 &&
                      jobs[i].reply.prompt_tokens < 1000 && jobs[i].cost > 0 && jobs[i].cost < 0.01,
                  "%s %s: claimed usage must be replaced by an estimate (%ld prompt tokens, $%g)", wire_name(p.wire), faults[i],
                  jobs[i].reply.prompt_tokens, jobs[i].cost);
        CHECK(st.usage_estimated == 2 && st.cost_usd > 0, "%s: %ld estimated, $%g", wire_name(p.wire), st.usage_estimated, st.cost_usd);
        for (int i = 0; i < 2; i++) llm_job_clear(&jobs[i]);
    }
    // negative usage cannot buy more requests than the budget allows
    ProviderConfig p = provider(WIRE_OPENAI);
    p.price_in_per_mtok = 1e5;
    ClientLimits l = fast_limits();
    l.concurrency = 1, l.budget_usd = 1.0, l.use_cache = 0;
    const char *faults[] = {"usageneg", "usageneg", "usageneg", "usageneg", "usageneg"};
    LlmJob jobs[5];
    LlmMessage msgs[10];
    char texts[5][128];
    ClientStats st;
    run_faults(&p, &l, NULL, "usage-budget", faults, 5, jobs, msgs, texts, &st);
    CHECK(st.requests_sent == 1 && st.skipped_budget == 4 && st.cost_usd > l.budget_usd,
          "negative usage must still spend the budget: %ld sent, %ld skipped, $%g", st.requests_sent, st.skipped_budget, st.cost_usd);
    for (int i = 0; i < 5; i++) llm_job_clear(&jobs[i]);
    printf("usage: -1e6 and 1e30 tokens estimated instead; the budget stops after one reply\n");
}

static void check_invalid_utf8(void) {
    ProviderConfig p = provider(WIRE_ANTHROPIC);
    ClientLimits l = fast_limits();
    l.use_cache = 0;
    const char *faults[] = {"badutf8"};
    LlmJob jobs[1];
    LlmMessage msgs[2];
    char texts[1][128];
    ClientStats st;
    run_faults(&p, &l, NULL, "utf8-drop", faults, 1, jobs, msgs, texts, &st);
    CHECK(jobs[0].status == JOB_FAILED && strstr(jobs[0].error, "invalid UTF-8") && jobs[0].attempts == 1 && jobs[0].unusable_cost > 0,
          "invalid UTF-8 must fail the request, paid for (status %d, %s)", jobs[0].status, jobs[0].error ? jobs[0].error : "");
    llm_job_clear(&jobs[0]);
    l.repair_utf8 = 1;
    run_faults(&p, &l, NULL, "utf8-repair", faults, 1, jobs, msgs, texts, &st);
    CHECK(jobs[0].status == JOB_OK && strstr(jobs[0].reply.text, "bad\xEF\xBF\xBD\xEF\xBF\xBD") && st.utf8_repaired == 1,
          "repair_utf8 must replace the bytes with U+FFFD (%s)", jobs[0].reply.text ? jobs[0].reply.text : jobs[0].error);
    llm_job_clear(&jobs[0]);
}

static long max_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void check_reply_cap(void) {
    ProviderConfig p = provider(WIRE_GEMINI);
    ClientLimits l = fast_limits();
    l.use_cache = 0;
    l.max_reply_bytes = 1 << 20;
    const char *faults[] = {"huge"};
    LlmJob jobs[1];
    LlmMessage msgs[2];
    char texts[1][128];
    ClientStats st;
    long rss0 = max_rss_kb();
    double t0 = ld_time_s();
    run_faults(&p, &l, NULL, "reply-cap", faults, 1, jobs, msgs, texts, &st);
    long grew = max_rss_kb() - rss0;
    CHECK(jobs[0].status == JOB_OK && jobs[0].attempts == 2 && st.unusable_cost_usd > 0,
          "a 200 MB reply must be cut at 1 MB and asked again (status %d, %d attempts, $%g unusable)", jobs[0].status, jobs[0].attempts,
          st.unusable_cost_usd);
    CHECK(grew < 32 * 1024, "a 200 MB reply grew the client by %ld kB", grew);
    printf("reply cap: 200 MB body aborted at 1 MB in %.2fs, peak memory +%ld kB\n", ld_time_s() - t0, grew);
    llm_job_clear(&jobs[0]);
}

static void check_unusable_paid(void) {
    char path[320];
    snprintf(path, sizeof path, "%s/unusable.sqlite", g_dir);
    LlmCache *cache = cache_open(path);
    ProviderConfig p = provider(WIRE_OPENAI);
    ClientLimits l = fast_limits();
    const char *faults[] = {"nojson", "invalid", "numcontent", "nochoices"};
    LlmJob jobs[4];
    LlmMessage msgs[8];
    char texts[4][128];
    ClientStats st;
    run_faults(&p, &l, cache, "unusable", faults, 4, jobs, msgs, texts, &st);
    double unusable = 0, used = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(jobs[i].status == JOB_OK && jobs[i].attempts == 2 && jobs[i].unusable_cost > 0,
              "%s: the unusable reply must be paid for (status %d, $%g)", faults[i], jobs[i].status, jobs[i].unusable_cost);
        unusable += jobs[i].unusable_cost, used += jobs[i].cost;
        llm_job_clear(&jobs[i]);
    }
    CHECK(fabs(st.unusable_cost_usd - unusable) < 1e-12 && fabs(st.new_cost_usd - used - unusable) < 1e-12,
          "stats: $%g unusable (jobs $%g), $%g paid now", st.unusable_cost_usd, unusable, st.new_cost_usd);
    CHECK(fabs(cache_total_cost(cache) - used - unusable) < 1e-12, "the cache's total ($%g) leaves out unusable replies",
          cache_total_cost(cache));
    cache_close(cache);
    printf("unusable: prose, HTML, a number and empty choices cost $%.6f, counted\n", unusable);
}

static int closed_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &n);
    close(s);  // nothing listens there now
    return ntohs(a.sin_port);
}

static void check_service_down(void) {
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", closed_port());
    ProviderConfig p = provider(WIRE_OPENAI);
    p.base_url = base;
    ClientLimits l = fast_limits();
    l.max_attempts = 3, l.concurrency = 4, l.use_cache = 0;
    int n = 20;
    LlmJob jobs[20];
    LlmMessage msgs[40];
    char texts[20][128];
    ClientStats st;
    run_faults(&p, &l, NULL, "down", NULL, n, jobs, msgs, texts, &st);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        failed += jobs[i].status == JOB_FAILED && strstr(jobs[i].error, "connect");
        llm_job_clear(&jobs[i]);
    }
    CHECK(st.all_failed && st.gave_up && strstr(st.first_error, "connect") && failed == n &&
              st.requests_sent <= l.concurrency * l.max_attempts,
          "a service that is down: all_failed %d, gave_up %d, '%s', %d failed, %ld requests", st.all_failed, st.gave_up, st.first_error,
          failed, st.requests_sent);
    printf("service down: %d jobs ended after %ld connection attempts\n", n, st.requests_sent);
}

static int file_is_utf8_jsonl(const char *path) {
    size_t n;
    char *s = ld_read_file(path, &n);
    int ok = s != NULL && ld_utf8_invalid_at(s, n) < 0;
    for (char *line = ok ? strtok(s, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        ok &= cJSON_IsObject(o);
        cJSON_Delete(o);
    }
    free(s);
    return ok;
}

// Synthesis against the fault server: a JSON reply off the contract is asked again (with a marker, so a rerun
// is answered from the cache, not with the off-contract reply forever); invalid UTF-8 is dropped with its reason.
static void check_synth_replies(LlmCache *cache) {
    char seeds_path[320], test_path[320], out[320], drop[320];
    snprintf(seeds_path, sizeof seeds_path, "%s/seeds.jsonl", g_dir);
    snprintf(test_path, sizeof test_path, "%s/test.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/synth.jsonl", g_dir);
    snprintf(drop, sizeof drop, "%s/dropped.jsonl", g_dir);
    const char *rec =
        "{\"id\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"fine\"}]}\n";
    FILE *f = fopen(seeds_path, "w");
    fprintf(f, rec, "s1", "Turn this into a date FAULTS:offcontract");
    fprintf(f, rec, "s2", "Turn that into a date FAULTS:badutf8");
    fclose(f);
    f = fopen(test_path, "w");
    fprintf(f, rec, "t1", "What is the capital of France?");
    fclose(f);
    Records seeds, test;
    CHECK(records_read(seeds_path, 1, &seeds) == 0 && records_read(test_path, 1, &test) == 0, "%s", ld_last_error());
    SynthConfig cfg = {.task = "dates",
                       .round = 2,
                       .calls = 2,
                       .pairs_per_call = 3,
                       .seed = 1,
                       .max_instruction_chars = 4000,
                       .max_response_chars = 8000,
                       .dedup_threshold = 0.8,
                       .decontam_ngram = 8,
                       .decontam_threshold = 0.5,
                       .max_reask = 2};
    ProviderConfig p = provider(WIRE_OPENAI);
    ClientLimits l = fast_limits();
    SynthSummary sum;
    CHECK(synth_run(&p, &l, cache, &cfg, &seeds, NULL, 0, &test, out, drop, &sum) == 0, "synth: %s", ld_last_error());
    char *drops = ld_read_file(drop, NULL);
    CHECK(sum.reasked == 1 && sum.calls_ok == 1 && sum.kept >= 3,
          "the off-contract reply must be asked again (%d re-asked, %d ok, %d kept)", sum.reasked, sum.calls_ok, sum.kept);
    CHECK(drops && strstr(drops, "invalid UTF-8"), "the invalid UTF-8 reply must be dropped with its reason: %s", drops ? drops : "");
    CHECK(file_is_utf8_jsonl(out) && file_is_utf8_jsonl(drop), "synth wrote a line that is not valid UTF-8 JSON");
    char *first = ld_read_file(out, NULL);
    long sent_before = sum.client.requests_sent;
    CHECK(synth_run(&p, &l, cache, &cfg, &seeds, NULL, 0, &test, out, drop, &sum) == 0, "synth rerun: %s", ld_last_error());
    char *second = ld_read_file(out, NULL);
    // the off-contract call and its re-ask come from the cache; the failed badutf8 call is asked again (and now
    // answered cleanly: the fault server's faults are per attempt), so the first run's records are kept and more added
    CHECK(sum.reasked == 1 && sum.client.cache_hits == 2 && sum.client.requests_sent == 1 && first && second &&
              !strncmp(first, second, strlen(first)) && strlen(second) > strlen(first),
          "synth rerun: %d re-asked, %ld cache hits, %ld sent (first run %ld)", sum.reasked, sum.client.cache_hits,
          sum.client.requests_sent, sent_before);
    free(drops), free(first), free(second);
    records_free(&seeds), records_free(&test);
    printf("synth: off-contract reply re-asked once, invalid UTF-8 dropped, rerun from the cache\n");
}

// The request each wire format builds, field by field, from its public API reference.
static void check_request_shapes(void) {
    LlmMessage m[] = {{"system", "be brief"}, {"user", "hi"}, {"assistant", "hello"}, {"user", "json please"}};
    LlmRequest r = {.messages = m, .n_messages = 4, .json_mode = 1, .json_schema = "{\"type\":\"object\"}"};
    ProviderConfig p = {.base_url = "https://example.test/v1/", .model = "mod", .temperature = 0.3, .max_tokens = 99};
    HttpRequest h;
    p.wire = WIRE_OPENAI;
    CHECK(provider_build(&p, &r, &h) == 0, "openai build");
    cJSON *b = cJSON_Parse(h.body);
    CHECK(!strcmp(h.url, "https://example.test/v1/chat/completions"), "openai url %s", h.url);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(b, "messages")) == 4 && cJSON_GetObjectItem(b, "max_tokens")->valueint == 99,
          "openai messages/max_tokens");
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "response_format"), "type")->valuestring, "json_schema"),
          "openai structured output");
    char *kh = provider_key_header(&p, "K");
    CHECK(!strcmp(kh, "Authorization: Bearer K"), "openai key header");
    free(kh), cJSON_Delete(b), http_request_free(&h);
    p.wire = WIRE_ANTHROPIC;
    p.base_url = "https://api.example.test";
    provider_build(&p, &r, &h);
    b = cJSON_Parse(h.body);
    CHECK(!strcmp(h.url, "https://api.example.test/v1/messages"), "anthropic url %s", h.url);
    CHECK(!strcmp(cJSON_GetObjectItem(b, "system")->valuestring, "be brief") && cJSON_GetArraySize(cJSON_GetObjectItem(b, "messages")) == 3,
          "anthropic takes the system prompt apart");
    int version = 0;
    for (int i = 0; i < h.n_headers; i++) version |= !strcmp(h.headers[i], "anthropic-version: 2023-06-01");
    CHECK(version, "anthropic-version header");
    kh = provider_key_header(&p, "K");
    CHECK(!strcmp(kh, "x-api-key: K"), "anthropic key header");
    free(kh), cJSON_Delete(b), http_request_free(&h);
    p.wire = WIRE_GEMINI;
    provider_build(&p, &r, &h);
    b = cJSON_Parse(h.body);
    CHECK(!strcmp(h.url, "https://api.example.test/v1beta/models/mod:generateContent"), "gemini url %s", h.url);
    cJSON *contents = cJSON_GetObjectItem(b, "contents"), *gc = cJSON_GetObjectItem(b, "generationConfig");
    CHECK(cJSON_GetArraySize(contents) == 3 && !strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(contents, 1), "role")->valuestring, "model"),
          "gemini roles user/model");
    CHECK(cJSON_GetObjectItem(b, "systemInstruction") &&
              !strcmp(cJSON_GetObjectItem(gc, "responseMimeType")->valuestring, "application/json") &&
              cJSON_GetObjectItem(gc, "responseSchema") && cJSON_GetObjectItem(gc, "maxOutputTokens")->valueint == 99,
          "gemini generationConfig");
    kh = provider_key_header(&p, "K");
    CHECK(!strcmp(kh, "x-goog-api-key: K") && !strstr(h.url, "key="), "gemini key in a header, never the URL");
    free(kh), cJSON_Delete(b), http_request_free(&h);
}

static void check_missing_key(void) {
    ProviderConfig p = provider(WIRE_OPENAI);
    p.api_key_env = "LD_TEST_KEY_THAT_IS_NOT_SET";
    ClientLimits l = fast_limits();
    LlmJob jobs[1];
    LlmMessage msgs[2];
    char texts[1][128];
    make_jobs(jobs, msgs, texts, 1, "nokey", NULL);
    CHECK(llm_run(&p, &l, NULL, jobs, 1, NULL, NULL, NULL) != 0 && strstr(ld_last_error(), "LD_TEST_KEY_THAT_IS_NOT_SET"),
          "a missing key variable must stop the run naming the variable: %s", ld_last_error());
}

static void check_no_key_on_disk(const char *cache_path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep -rqa '%s' %s", TEST_KEY, g_dir);
    CHECK(system(cmd) != 0, "the API key was found in a file under %s (cache: %s)", g_dir, cache_path);
}

int main(void) {
    setenv("LD_TEST_KEY", TEST_KEY, 1);
    start_server();
    char cache_path[300];
    snprintf(cache_path, sizeof cache_path, "%s/cache.sqlite", g_dir);
    LlmCache *cache = cache_open(cache_path);
    CHECK(cache != NULL, "%s", ld_last_error());
    check_wires_and_faults(cache);
    check_cache_rerun(cache);
    check_rate_and_concurrency();
    check_token_limit();
    check_budget();
    check_retry_after_cap();
    check_usage_claims();
    check_invalid_utf8();
    check_reply_cap();
    check_unusable_paid();
    check_service_down();
    check_synth_replies(cache);
    check_missing_key();
    check_request_shapes();
    cache_close(cache);
    check_no_key_on_disk(cache_path);
    stop_server();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_finish("test_llm_client");
}
