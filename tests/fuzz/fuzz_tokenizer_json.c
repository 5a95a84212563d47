// libFuzzer: tokenizer.json loading, then encoding and decoding with whatever loads. The first input byte
// splits the data into the JSON and a text to encode.
#include <stdint.h>
#include <stdlib.h>

#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t text_len = data[0] % 64;
    if (text_len > size - 1) text_len = size - 1;
    const char *text = (const char *)data + 1, *json = text + text_len;
    Tokenizer *t = tok_load_hf_json(json, size - 1 - text_len, "fuzz.json");
    if (!t) return 0;
    int *ids;
    int n = tok_encode(t, text, text_len, TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &ids);
    char *s = tok_decode(t, ids, n, 0);
    free(s);
    free(ids);
    tok_free(t);
    return 0;
}
