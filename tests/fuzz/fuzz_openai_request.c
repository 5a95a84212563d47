// libFuzzer: an HTTP request body for `llamaduo serve` (the OpenAI request parser), then the JSON-schema matcher
// its response_format compiles to, fed arbitrary bytes. Input: kind byte (even chat, odd completions; bit 1:
// unknown fields ignored), the body, a NUL, then the bytes for the matcher. Every refusal's body must be valid
// UTF-8 JSON, whatever bytes the request echoed.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_constraint.h"
#include "openai_api.h"
#include "util.h"

static int valid_utf8(const char *s) { return ld_utf8_invalid_at(s, strlen(s)) < 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *body = (const char *)data + 1;
    size_t n = size - 1, blen = 0;
    while (blen < n && body[blen]) blen++;
    ApiLimits lim = {1 << 20, 64, 4096, 8, (data[0] >> 1) & 1};
    ApiRequest r;
    ApiError err;
    if (api_parse_request(body, blen, (data[0] & 1) ? API_COMPLETION : API_CHAT, &lim, &r, &err)) {
        if (err.status < 400 || err.status > 499 || !err.message[0]) abort();  // every refusal is a 4xx with a reason
        char *e = api_error_json(&err);
        cJSON *back = cJSON_Parse(e);
        if (!back || !valid_utf8(e)) abort();
        cJSON_Delete(back);
        free(e);
        return 0;
    }
    if (r.n < 1 || r.n > lim.max_n || (r.max_tokens != -1 && (r.max_tokens < 1 || r.max_tokens > lim.max_tokens))) abort();
    if (!(r.frequency_penalty >= -2 && r.frequency_penalty <= 2 && r.presence_penalty >= -2 && r.presence_penalty <= 2)) abort();
    JsonSchema *s = r.json_mode == 2 ? json_schema_compile(r.json_schema) : json_schema_any_object();
    if (s) {
        JsonMatcher *m = json_matcher_new(s);
        const char *doc = blen < n ? body + blen + 1 : "";
        size_t dlen = blen < n ? n - blen - 1 : 0;
        for (size_t i = 0; i < dlen; i++) {  // byte by byte: accepts() must agree with feed()
            int a = json_matcher_accepts(m, doc + i, 1);
            if (a != (json_matcher_feed(m, doc + i, 1) == 0)) abort();
            if (!a) break;
        }
        json_matcher_complete(m);
        json_matcher_free(m);
        json_schema_free(s);
    }
    api_request_free(&r);
    return 0;
}
