// defines: the KV cache and the batched forward pass on the CPU backend (the model itself: transformer.h): any mix
// of sequences and positions in one call, so prefill of many prompts and one decode step of many sequences are the
// same operation.
#pragma once
#include <stdint.h>

#include "model.h"

typedef struct {
    int n_layers, n_slots, ctx, kv_dim;
    float *k, *v;  // [n_layers][n_slots][ctx][kv_dim], kv_dim = Hkv*hd
} KVCache;

KVCache *kv_new(const ModelConfig *c, int n_slots, int ctx);  // NULL (with error) when it cannot be allocated
void kv_free(KVCache *kv);

// Runs n tokens. Token i belongs to cache slot slot[i] at position pos[i]; positions 0..pos[i]-1 of that
// slot must already be in the cache or earlier in this batch. For every i with want[i] (all when want is
// NULL) one row of logits [vocab] is written to `logits`, in order. Returns 0, or -1 with an error.
int model_forward(const Model *m, KVCache *kv, const int *tokens, const int *slot, const int *pos, int n, const uint8_t *want,
                  float *logits);
