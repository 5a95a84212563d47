// libFuzzer: a reply the proxy relays (the service's or the student's), read for its text as the capture does:
// a whole Chat Completions / Completions body, or the server-sent events of a stream. Input: a kind byte (bit 0:
// completions, bit 1: a stream), then the body. The text is never longer than the body it came from.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "openai_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char *body = malloc(size);  // NUL-terminated copy: the reader gets a length, but cJSON may peek one past
    memcpy(body, data + 1, size - 1);
    body[size - 1] = 0;
    char *text = api_reply_text(body, size - 1, (data[0] & 1) ? API_COMPLETION : API_CHAT, (data[0] >> 1) & 1);
    if (text && strlen(text) > size - 1) abort();
    free(text), free(body);
    return 0;
}
