// libFuzzer: YAML config reading, the strict service-section checks, the stage sections (task.check compiled:
// labels, PCRE2 regex, JSON schema; judge.method and the judge.pass rule, evaluated against a fixed metrics object)
// the training options' schema (student.train / train:) and the proxy's config on whatever parses.
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "proxy.h"
#include "stage_config.h"
#include "train_options.h"

static const char *k_metrics =
    "{\"similarity\":{\"mean\":80,\"median\":85,\"share_ge50\":0.9,\"share_ge70\":0.7},"
    "\"precision\":{\"mean\":75},\"exact_match\":0.8,\"checker\":0.5}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root = yaml_to_json((const char *)data, size, "fuzz.yaml");
    if (!root) return 0;
    const cJSON *svc = cJSON_GetObjectItemCaseSensitive(root, "service");
    ProviderConfig p;
    ClientLimits l;
    if (svc) cfg_service(svc, "service", "fuzz.yaml", &p, &l);
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(root, "train");
    if (train) {
        TrainOptions o;
        train_options_init(&o);
        if (!train_options_from_json(&o, train, "train", "fuzz.yaml")) train_options_check(&o, 1);
    }
    static const char *const extra[] = {"run", "student", "report", "train", NULL};
    StageConfig st;
    if (stage_config_parse(root, "fuzz.yaml", extra, 1, &st) == 0) {
        cJSON *m = cJSON_Parse(k_metrics), *report = NULL;
        pass_rule_eval(&st.rule, m, &report);
        pass_rule_score(&st.rule, m);
        char *d = pass_rule_describe(&st.rule);
        free(d);
        cJSON_Delete(report), cJSON_Delete(m);
    }
    stage_config_free(&st);
    cJSON_Delete(st.local);
    ProxyConfig pc;
    proxy_config_parse(cJSON_Duplicate(root, 1), "fuzz.yaml", &pc);
    proxy_config_free(&pc);
    cJSON_Delete(root);
    return 0;
}
