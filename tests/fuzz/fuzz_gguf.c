// libFuzzer: the GGUF parser, then the model config and tokenizer readers on whatever it accepts.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Gguf g;
    memset(&g, 0, sizeof g);
    if (gguf_parse(data, size, "fuzz.gguf", &g) != 0) return 0;
    for (int i = 0; i < g.n_tensors; i++) {
        const TensorRef *t = &g.tensors[i];
        if (t->data < data || t->data + t->nbytes > data + size) abort();
        if (t->nbytes <= 4096 && t->dtype != LD_F32) {  // dequantise small tensors: reads stay in bounds
            int64_t n = ld_tensor_numel(t);
            float *out = malloc(sizeof(float) * (size_t)(n ? n : 1));
            ld_dequantize(t->dtype, t->data, out, (size_t)n);
            free(out);
        }
    }
    ModelConfig c;
    if (model_config_from_gguf(&g, &c) == 0) model_config_free(&c);
    Tokenizer *tok = tok_load_gguf(&g);
    if (tok) {
        int *ids;
        int n = tok_encode(tok, "Hello <s> world 123", 19, TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &ids);
        char *s = tok_decode(tok, ids, n, 0);
        free(s);
        free(ids);
        tok_free(tok);
    }
    g.path = NULL;
    gguf_close(&g);
    return 0;
}
