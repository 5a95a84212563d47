// Row scatter and gather: KV-cache writes and picking the rows that want logits.
#include <string.h>

#include "../kernels.h"

void k_scatter_rows(float *dst, const float *src, const int *dst_rows, int n, int width) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)dst_rows[i] * width, src + (size_t)i * width, sizeof(float) * width);
}

void k_gather_rows(float *dst, const float *src, const int *src_rows, int n, int width) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * width, src + (size_t)src_rows[i] * width, sizeof(float) * width);
}
