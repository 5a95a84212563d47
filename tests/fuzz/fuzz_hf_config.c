// libFuzzer: HF config.json reading.
#include <stdint.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ModelConfig c;
    model_config_from_hf_json((const char *)data, size, "fuzz/config.json", &c);
    model_config_free(&c);  // a failed parse may hold a partly filled config too
    return 0;
}
