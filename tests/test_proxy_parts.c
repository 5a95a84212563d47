// The proxy's parts on their own: the circuit breaker's states over injected time, the reply text a capture
// keeps (whole and streamed, chat and completions, the first choice only), --since, and config refusals that
// name the key.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "openai_api.h"
#include "proxy.h"
#include "test_util.h"
#include "util.h"

static void breaker(void) {
    Breaker b;
    breaker_init(&b, 3, 10, 5);
    CHECK(breaker_allow(&b, 0), "closed lets requests through");
    breaker_result(&b, 0, 0), breaker_result(&b, 0, 1);
    breaker_result(&b, 1, 2);  // a success between failures does not wipe them: 3 in the window still open it
    CHECK(b.state == BREAKER_CLOSED, "two failures keep it closed");
    breaker_result(&b, 0, 20);  // the first two are out of the window by now
    CHECK(b.state == BREAKER_CLOSED, "three failures spread over 20 s (window 10 s) keep it closed");
    breaker_result(&b, 0, 21), breaker_result(&b, 0, 22);
    CHECK(b.state == BREAKER_OPEN && b.times_opened == 1, "three failures within 10 s open it");
    CHECK(!breaker_allow(&b, 23), "open: no request to the service");
    breaker_result(&b, 0, 23.5);  // a straggler sent before it opened
    CHECK(b.state == BREAKER_OPEN && b.opened_at == 22, "a straggler's failure changes nothing");
    CHECK(breaker_allow(&b, 27.5), "after the cooldown one request probes");
    CHECK(b.state == BREAKER_HALF_OPEN && !breaker_allow(&b, 27.6), "half-open: only the one probe");
    breaker_result(&b, 0, 28);
    CHECK(b.state == BREAKER_OPEN && b.times_opened == 2 && !breaker_allow(&b, 30), "a failed probe opens it again, the cooldown anew");
    CHECK(breaker_allow(&b, 33.1), "the next probe after the second cooldown");
    breaker_result(&b, 1, 33.2);
    CHECK(b.state == BREAKER_CLOSED && breaker_allow(&b, 33.3), "a good probe closes it");
    breaker_result(&b, 0, 34), breaker_result(&b, 0, 35);
    CHECK(b.state == BREAKER_CLOSED, "closed afresh: two failures are not enough");
    CHECK(!strcmp(breaker_state_name(BREAKER_HALF_OPEN), "half_open"), "state names");
    breaker_free(&b);
}

static void reply_text(void) {
    const char *whole = "{\"choices\":[{\"index\":1,\"message\":{\"content\":\"second\"}},{\"index\":0,\"message\":{\"content\":\"first\"}}]}";
    char *t = api_reply_text(whole, strlen(whole), API_CHAT, 0);
    CHECK(t && !strcmp(t, "first"), "a whole chat reply: the first choice (%s)", t ? t : "NULL");
    free(t);
    const char *stream =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"2024-\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}}]}\n\n"
        ": a comment line\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"05-01\"},\"finish_reason\":\"stop\"}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\ndata: [DONE]\n\n";
    t = api_reply_text(stream, strlen(stream), API_CHAT, 1);
    CHECK(t && !strcmp(t, "2024-05-01"), "a stream: choice 0's deltas joined (%s)", t ? t : "NULL");
    free(t);
    const char *comp = "data: {\"choices\":[{\"text\":\"once \"}]}\n\ndata: {\"choices\":[{\"text\":\"upon\"}]}\n\n";
    t = api_reply_text(comp, strlen(comp), API_COMPLETION, 1);
    CHECK(t && !strcmp(t, "once upon"), "a streamed completion (%s)", t ? t : "NULL");
    free(t);
    CHECK(!api_reply_text("<html>", 6, API_CHAT, 0) && !api_reply_text("", 0, API_CHAT, 1), "no text in garbage: NULL");
}

static void since(void) {
    double e;
    CHECK(!capture_parse_since("2026-11-30", &e) && e == 1795996800, "a date is its UTC midnight (%.0f)", e);
    CHECK(!capture_parse_since("2026-11-30T12:00:00Z", &e) && e == 1795996800 + 43200, "a UTC time");
    CHECK(!capture_parse_since("24h", &e) && fabs((double)time(NULL) - 86400 - e) < 5, "an age");
    CHECK(capture_parse_since("yesterday", &e) && strstr(ld_last_error(), "--since yesterday"), "nonsense refused by name");
    CHECK(capture_parse_since("2026-11-30 junk", &e), "trailing junk refused");
}

static int config_refused(const char *yaml, const char *want) {
    char path[] = "/tmp/llamaduo-proxy-config-XXXXXX";
    int fd = mkstemp(path);
    if (write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) return 0;
    close(fd);
    ProxyConfig c;
    int rc = proxy_config_load(path, &c);
    proxy_config_free(&c);
    unlink(path);
    int ok = rc == -1 && strstr(ld_last_error(), want);
    if (!ok) fprintf(stderr, "  wanted '%s', got: %s\n", want, rc ? ld_last_error() : "(accepted)");
    return ok;
}

static void configs(void) {
    const char *svc = "service: {base_url: 'http://127.0.0.1:9/v1'}\n";
    char y[1024];
    CHECK(config_refused("proxy: {port: 1}\n", "missing 'service'"), "no service section");
    snprintf(y, sizeof y, "%sroutes: [{model: a, mode: sideways}]\n", svc);
    CHECK(config_refused(y, "routes[0].mode"), "an unknown mode, named");
    snprintf(y, sizeof y, "%sroutes: [{model: a, mode: canary}]\n", svc);
    CHECK(config_refused(y, "needs 'share'"), "a canary without its share");
    snprintf(y, sizeof y, "%sroutes: [{model: a, mode: canary, share: 1.5}]\n", svc);
    CHECK(config_refused(y, "routes[0].share"), "a share over 1");
    snprintf(y, sizeof y, "%sroutes: [{model: a, mode: local}]\n", svc);
    CHECK(config_refused(y, "student.base_url"), "a local route without a student");
    snprintf(y, sizeof y, "%sroutes: [{model: a}, {model: a, mode: shadow}]\n", svc);
    CHECK(config_refused(y, "a second route for model 'a'"), "two routes for one model");
    snprintf(y, sizeof y, "%sbreaker: {failures: 0}\n", svc);
    CHECK(config_refused(y, "breaker.failures"), "a breaker of 0 failures");
    CHECK(config_refused("service: {base_url: x, api_key_env: LLAMADUO_UNSET_VAR_1}\n", "LLAMADUO_UNSET_VAR_1, which is not set"),
          "a key variable that is not set");
    setenv("LLAMADUO_PROXY_TEST_KEY", "k", 1);
    CHECK(config_refused("service: {base_url: x, api_key_env: LLAMADUO_PROXY_TEST_KEY, forward_client_key: true}\n", "not both"),
          "a service key and forwarding the client's");
    snprintf(y, sizeof y, "%sstudent: {model: /nonexistent/model.gguf}\n", svc);
    CHECK(config_refused(y, "student.model: /nonexistent/model.gguf does not exist"), "a student model that is not there");
    snprintf(y, sizeof y, "%scapture: {db: x, sampel: 1}\n", svc);
    CHECK(config_refused(y, "capture.sampel"), "a misspelt key");
    CHECK(config_refused("service: [1, 2\n", "proxy-config"), "broken YAML names the file");
    snprintf(y, sizeof y, "%sstudent: {base_url: 'http://127.0.0.1:9/v1'}\nroutes: [{model: a, mode: shadow}]\ncapture: {enabled: false}\n", svc);
    CHECK(config_refused(y, "needs capture.enabled"), "a shadow route with capture off");
}

int main(void) {
    breaker();
    reply_text();
    since();
    configs();
    return test_finish("test_proxy_parts");
}
