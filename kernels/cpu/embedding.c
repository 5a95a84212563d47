// Token embeddings: rows of a table in any file format gathered and scaled; backward, the rows' gradients added
// into an fp32 table's gradient. The contract of kernels/cuda/embedding.cu.
#include <stdint.h>

#include "../kernels.h"

void k_embedding(float *x, const void *table, LdDtype tt, const int *tokens, int T, int D, float scale) {
    size_t row_bytes = ld_dtype_nbytes(tt, (uint64_t)D);
    for (int t = 0; t < T; t++) {
        float *xt = x + (size_t)t * D;
        ld_dequantize_row(tt, (const uint8_t *)table + (size_t)tokens[t] * row_bytes, xt, D);
        for (int j = 0; j < D; j++) xt[j] *= scale;
    }
}

void k_embedding_backward(float *dtable, const float *dx, const int *tokens, int T, int D, float scale) {
    for (int t = 0; t < T; t++) {
        float *row = dtable + (size_t)tokens[t] * D;
        for (int j = 0; j < D; j++) row[j] += scale * dx[(size_t)t * D + j];
    }
}
