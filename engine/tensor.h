// defines: TensorRef, a named view of one tensor inside a mapped model file (safetensors or GGUF).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define LD_MAX_DIMS 4

typedef struct {
    char *name;
    LdDtype dtype;
    int n_dims;
    int64_t shape[LD_MAX_DIMS];  // outermost first, as HF/PyTorch write it: a linear weight is [out, in]
    const uint8_t *data;  // inside the file's memory map
    size_t nbytes;
} TensorRef;

int64_t ld_tensor_numel(const TensorRef *t);
