// libFuzzer: parsing a provider's HTTP reply body in each wire format, and its error message. Whatever the
// bytes, believed usage is a whole number in [0, LD_USAGE_MAX], and the finish reason and error message are
// valid UTF-8 (they end up in JSON records); the text is checked (and repaired) by the client.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"
#include "util.h"

static int valid_utf8(const char *s) { return ld_utf8_invalid_at(s, strlen(s)) < 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int w = 0; w < 3; w++) {
        ProviderConfig p = {.wire = (WireFormat)w, .base_url = "http://x", .model = "m"};
        LlmReply r;
        char err[256];
        int rc = provider_parse(&p, (const char *)data, size, &r, err, sizeof err);
        if (r.usage_known &&
            (r.prompt_tokens < 0 || r.prompt_tokens > LD_USAGE_MAX || r.completion_tokens < 0 || r.completion_tokens > LD_USAGE_MAX))
            abort();
        if (rc == 0) {
            if (!valid_utf8(r.finish_reason)) abort();
            char *fixed = ld_utf8_repair(r.text, strlen(r.text), NULL);
            if (!valid_utf8(fixed)) abort();
            free(fixed);
            llm_reply_free(&r);
        }
    }
    char *m = provider_error_message((const char *)data, size, 500);
    if (!valid_utf8(m)) abort();
    free(m);
    return 0;
}
