// libFuzzer: YAML config reading, the strict service-section checks and the training options' schema
// (student.train / train:) on whatever parses.
#include <stdint.h>

#include "config.h"
#include "train_options.h"

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
    cJSON_Delete(root);
    return 0;
}
