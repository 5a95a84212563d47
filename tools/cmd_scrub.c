// llamaduo scrub: what the privacy scrubber would replace in a JSONL file before any of it is sent.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "privacy.h"
#include "stage_config.h"
#include "util.h"

int cmd_scrub(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf(
            "usage: llamaduo scrub FILE.jsonl [--config C.yaml] [--show]\n\n"
            "Shows what the privacy scrubber would replace before a request leaves: every string of every record\n"
            "searched for emails, phone numbers, IP addresses, IBANs, card numbers (Luhn-checked), URLs with credentials\n"
            "or tokens, API-key-like strings, and the config's privacy.terms and privacy.patterns. Prints the first finds\n"
            "of each kind with their placeholders and the counts by kind; --show prints each scrubbed record too.\n"
            "Nothing is sent or written.\n");
        return argc < 2 ? 2 : 0;
    }
    Args a = {argc, argv, 1, "scrub"};
    const char *file = NULL, *config = NULL;
    int show = 0;
    while (a.i < argc) {
        if (arg_value(&a, "--config", &config)) continue;
        if (arg_flag(&a, "--show")) {
            show = 1;
            continue;
        }
        if (argv[a.i][0] != '-' && !file) {
            file = argv[a.i++];
            continue;
        }
        arg_unknown(&a);
    }
    if (!file) die("scrub needs a JSONL file (see --help)");
    PrivacyConfig pc = {.enabled = 1};
    cJSON *root = NULL;
    StageConfig st = {0};
    if (config) {  // a run or a stage config: its privacy section, whether or not it is enabled there
        static const char *const extra[] = {"run", "student", "report", NULL};
        root = config_load(config);
        if (!root || stage_config_parse(root, config, extra, 1, &st)) die("%s", ld_last_error());
        pc = st.privacy;
    }
    Scrubber *s = scrubber_new(&pc, config ? config : "scrub");
    if (!s || privacy_report_file(s, file, show, stdout)) die("%s", ld_last_error());
    scrubber_free(s);
    stage_config_free(&st);
    cJSON_Delete(st.local);
    cJSON_Delete(root);
    return 0;
}
