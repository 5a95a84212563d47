// libFuzzer: the safetensors header parser on arbitrary bytes.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    SafeTensors st = {0};
    if (st_parse(data, size, "fuzz.safetensors", &st) == 0) {
        for (int i = 0; i < st.n_tensors; i++) {  // every accepted view must lie inside the input
            const TensorRef *t = &st.tensors[i];
            if (t->data < data || t->data + t->nbytes > data + size) abort();
        }
        for (int i = 0; i < st.n_tensors; i++) free(st.tensors[i].name);
        free(st.tensors);
    }
    return 0;
}
