// defines: KvRows, where attention (kernels.h k_attention) finds its keys and values — a batch's own rows, or a KV
// cache in pages, in fp32 or bf16 — and kv_page_row, the row a virtual row lies in, for the CPU reference and the
// CUDA kernels alike.
#pragma once
#include <stddef.h>

#include "dtype.h"
#include "host_device.h"

// k and v, each [rows, Hkv·hd] of type (LD_F32; LD_BF16 for a KV cache on the GPU). Where pages is set (a paged KV
// cache) the rows a token's range names are virtual: virtual row j lies at row j mod 2^page_shift of page
// pages[j >> page_shift], a page being 2^page_shift consecutive rows of k and v (a negative entry: a page not
// mapped, never in a range). Where pages is NULL the rows are as they are.
typedef struct {
    void *k, *v;
    LdDtype type;
    const int *pages;
    int page_shift;
} KvRows;

// The row of k and v that virtual row j lies in (-1: its page is not mapped).
LD_HOST_DEVICE static inline long long kv_page_row(const int *pages, int page_shift, int j) {
    if (!pages) return j;
    int page = pages[j >> page_shift];
    return page < 0 ? -1 : ((long long)page << page_shift) | (j & ((1 << page_shift) - 1));
}
