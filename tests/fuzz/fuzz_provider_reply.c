// libFuzzer: parsing a provider's HTTP reply body in each wire format, and its error message.
#include <stdint.h>
#include <stdlib.h>

#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int w = 0; w < 3; w++) {
        ProviderConfig p = {.wire = (WireFormat)w, .base_url = "http://x", .model = "m"};
        LlmReply r;
        char err[256];
        if (provider_parse(&p, (const char *)data, size, &r, err, sizeof err) == 0) llm_reply_free(&r);
    }
    free(provider_error_message((const char *)data, size, 500));
    return 0;
}
