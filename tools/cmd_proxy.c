// llamaduo proxy CONFIG.yaml, and llamaduo capture export|stats: the endpoint that stands in front of the service
// and the student (host/proxy.c), and what it captured read back.
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "capture.h"
#include "cli.h"
#include "proxy.h"
#include "util.h"

static const char *k_proxy_help =
    "usage: llamaduo proxy CONFIG.yaml [--port N] [--check]\n\n"
    "One OpenAI-compatible endpoint (POST /v1/chat/completions, /v1/completions; GET /v1/models, /health, /metrics)\n"
    "in front of the service LLM and the migrated student. Point the app's base URL at it. Per route (the model name\n"
    "clients send), "    "a mode: forward (to the service), shadow (forward; the student answers too, in the background; both recorded),\n"
    "canary (routes[].share of requests answered by the student), local (the student only). With routes[].failover,\n"
    "the student answers when the service fails (5xx, 429 past the retries, a timeout, no connection) or its circuit\n"
    "breaker is open; the header X-Llamaduo-Answered-By says who answered. Forwarded pairs are captured, scrubbed,\n"
    "in capture.db (SQLite): `llamaduo capture export` turns them into coverage data for `llamaduo run`.\n"
    "configs/proxy.example.yaml documents every key. --check reads the config and its key variables, and exits.\n";

static const char *k_capture_help =
    "usage: llamaduo capture export --db FILE --out coverage.jsonl [--since T]\n"
    "       llamaduo capture shadow --db FILE --out DIR [--since T]\n"
    "       llamaduo capture stats --db FILE [--since T]\n\n"
    "What `llamaduo proxy` captured. export: the service's answers as chat records ({id, messages}), one per distinct\n"
    "conversation: coverage data for `llamaduo run`. shadow: the shadow pairs as DIR/test.jsonl (the service's answer as\n"
    "the reference) and DIR/answers.jsonl (the student's), for `llamaduo judge --test DIR/test.jsonl --answers\n"
    "DIR/answers.jsonl` (judge.method metric scores agreement without paying a judge). stats: counts by route, mode and\n"
    "who answered, and the shadow pairs' agreement. T: a date (2026-11-30), a UTC time (2026-11-30T12:00:00Z) or an age\n"
    "(90m, 24h, 7d).\n";

int cmd_proxy(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("%s", k_proxy_help);
        return argc < 2 ? 2 : 0;
    }
    Args a = {argc, argv, 1, "proxy"};
    const char *config = NULL;
    int port = -1, check = 0;
    while (a.i < argc) {
        if (arg_int(&a, "--port", &port, 0, 65535)) continue;
        if (arg_flag(&a, "--check")) {
            check = 1;
            continue;
        }
        if (argv[a.i][0] != '-' && !config) {
            config = argv[a.i++];
            continue;
        }
        arg_unknown(&a);
    }
    if (!config) die("proxy needs a config file (see --help)");
    ProxyConfig c;
    if (proxy_config_load(config, &c)) die("%s", ld_last_error());
    if (port >= 0) c.port = port;
    if (check) {
        printf("%s: the config is complete: %d route(s), service %s\n", config, c.n_routes, c.service_url);
        proxy_config_free(&c);
        return 0;
    }
    static char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) die("cannot find this program's path (/proc/self/exe)");
    self[n] = 0;
    int rc = proxy_run(&c, config, self);
    if (rc) {
        char why[1024];
        snprintf(why, sizeof why, "%s", ld_last_error());
        proxy_config_free(&c);
        die("%s", why);
    }
    proxy_config_free(&c);
    return 0;
}

int cmd_capture(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("%s", k_capture_help);
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    if (strcmp(what, "export") && strcmp(what, "shadow") && strcmp(what, "stats")) die("capture %s: export, shadow or stats (see --help)", what);
    Args a = {argc, argv, 2, "capture"};
    const char *db = NULL, *out = NULL, *since_text = NULL;
    while (a.i < argc) {
        if (arg_value(&a, "--db", &db) || arg_value(&a, "--out", &out) || arg_value(&a, "--since", &since_text)) continue;
        arg_unknown(&a);
    }
    if (!db) die("capture %s needs --db (the proxy's capture.db)", what);
    if (!out && strcmp(what, "stats")) die("capture %s needs --out", what);
    double since = 0;
    if (since_text && capture_parse_since(since_text, &since)) die("%s", ld_last_error());
    if (!strcmp(what, "stats")) {
        if (capture_stats(db, since, stdout)) die("%s", ld_last_error());
        return 0;
    }
    CaptureExport st;
    int rc = !strcmp(what, "export") ? capture_export_coverage(db, since, out, &st) : capture_export_shadow(db, since, out, &st);
    if (rc) die("%s", ld_last_error());
    if (!strcmp(what, "export"))
        printf("capture export: %ld pairs read, %ld written, %ld duplicates left out -> %s\n", st.rows, st.exported, st.duplicates, out);
    else
        printf("capture shadow: %ld shadow pairs -> %s/test.jsonl and %s/answers.jsonl\n", st.shadow_pairs, out, out);
    return 0;
}
