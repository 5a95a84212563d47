// libFuzzer: YAML config reading and the strict service-section checks on whatever parses.
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root = yaml_to_json((const char *)data, size, "fuzz.yaml");
    if (!root) return 0;
    const cJSON *svc = cJSON_GetObjectItemCaseSensitive(root, "service");
    ProviderConfig p;
    ClientLimits l;
    if (svc) cfg_service(svc, "service", "fuzz.yaml", &p, &l);
    cJSON_Delete(root);
    return 0;
}
