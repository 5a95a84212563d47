// The service-LLM client against tests/fault_server.py on 127.0.0.1: all three wire formats; every fault
// (429 with/without Retry-After, 500/503, resets, timeouts, truncated/invalid JSON, missing JSON) ends in a
// result or a recorded failure; Retry-After honoured; rate window and concurrency never exceeded; the cache
// answers a rerun without a single request; the budget stops new requests; the key never reaches disk.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "llm_client.h"
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
        execlp("python3", "python3", LD_SOURCE "/tests/fault_server.py", "--port-file", port_file, "--log", g_log,
               "--slow", "3", "--expect-key-env", "LD_TEST_KEY", (char *)NULL);
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
    return (ProviderConfig){.wire = w, .base_url = base, .model = "test-model", .api_key_env = "LD_TEST_KEY",
                            .temperature = 0.2, .max_tokens = 64, .price_in_per_mtok = 2.5, .price_out_per_mtok = 10};
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
        snprintf(texts[i], 128, "%s request %d %s%s", prefix, i, faults && faults[i] ? "FAULTS:" : "", faults && faults[i] ? faults[i] : "");
        msgs[2 * i] = (LlmMessage){"system", "You are a test."};
        msgs[2 * i + 1] = (LlmMessage){"user", texts[i]};
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].req = (LlmRequest){.messages = &msgs[2 * i], .n_messages = 2, .json_mode = 1};
    }
}

static void check_wires_and_faults(LlmCache *cache) {
    const char *faults[] = {NULL, "429", "429ra", "500,503", "reset", "trunc", "invalid", "slow", "nojson,nojson",
                            "400", "500,500,500,500,500,500"};
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
        printf("%-9s: %d jobs, %ld requests, %ld retries, %ld failures, $%.6f\n", wire_name(p.wire), n, st.requests_sent,
               st.retries, st.failures, st.cost_usd);
        for (int i = 0; i < n; i++) llm_job_clear(&jobs[i]);
    }
    // Retry-After: the second attempt of the 429ra request came at least a second after the first
    Log lg = read_log();
    double first = -1;
    int checked = 0, key_bad = 0, answered_twice = 0;
    for (int i = 0; i < lg.n; i++) {
        cJSON *e = lg.e[i];
        if (!cJSON_IsTrue(cJSON_GetObjectItem(e, "key_ok"))) key_bad++;
        if (!strcmp(cJSON_GetObjectItem(e, "fault")->valuestring, "429ra")) first = cJSON_GetObjectItem(e, "t")->valuedouble;
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
    CHECK(st.cache_hits == n && st.requests_sent == 0 && after.n == before.n, "rerun: %ld cache hits, %ld requests sent",
          st.cache_hits, st.requests_sent);
    CHECK(st.new_cost_usd == 0 && st.cost_usd > 0, "rerun: replayed replies keep their cost (%g) and cost nothing new (%g)",
          st.cost_usd, st.new_cost_usd);
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
    printf("rate: %d requests in %.2fs at %d per %.0fs window: busiest window held %d, most in flight %d\n", n, dt, l.rpm,
           l.window_s, worst, max_inflight);
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
    printf("tokens: %d requests at %d tokens per %.1fs: busiest window held %ld tokens (%d requests), %.2fs\n", n, l.tpm,
           l.window_s, st.busiest_window_tokens, st.busiest_window, dt);
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
    CHECK(cJSON_GetObjectItem(b, "systemInstruction") && !strcmp(cJSON_GetObjectItem(gc, "responseMimeType")->valuestring, "application/json") &&
          cJSON_GetObjectItem(gc, "responseSchema") && cJSON_GetObjectItem(gc, "maxOutputTokens")->valueint == 99, "gemini generationConfig");
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
