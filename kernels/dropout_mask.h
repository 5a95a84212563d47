// defines: LoRA dropout's mask, once for the CPU reference (kernels/cpu/dropout.c) and the CUDA kernel
// (kernels/cuda/elementwise.cu): element e of a stream is kept when a hash of (stream, e) clears p. The mask is a
// function, not state, so the backward pass recomputes it and runs stay reproducible.
#pragma once
#include <stdint.h>

#include "host_device.h"

// The stream of one (layer, target) under a step's seed: each linear's adapter input gets its own mask.
static inline LD_HOST_DEVICE uint64_t ld_dropout_stream(uint64_t seed, int layer, int target) {
    return seed ^ ((uint64_t)layer << 40) ^ ((uint64_t)target << 56);
}

static inline LD_HOST_DEVICE int ld_dropout_keep(uint64_t stream, uint64_t e, float p) {
    uint64_t h = stream ^ (e * 0x9e3779b97f4a7c15ull);
    h ^= h >> 33, h *= 0xff51afd7ed558ccdull, h ^= h >> 33, h *= 0xc4ceb9fe1a85ec53ull, h ^= h >> 33;
    return (double)(h >> 11) * (1.0 / 9007199254740992.0) >= (double)p;
}
