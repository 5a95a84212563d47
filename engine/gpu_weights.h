// defines: a model's weights on a CUDA device — fp32 copies of every weight (file formats dequantised on upload),
// the RoPE frequency tables, and optionally a LoRA adapter's A and B — shared by GPU training and generation.
// Only built into the CUDA backend (LLAMADUO_HAVE_CUDA).
#pragma once
#include "lora.h"

typedef struct {  // one layer's weights on the device; NULL where the architecture has none
    float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *w_gate, *w_up, *w_down,
        *post_ffn_norm;
} GpuLayer;

typedef struct {
    float *embed, *lm_head, *final_norm, *inv_global, *inv_local;  // lm_head == embed when tied
    GpuLayer *layers;
    float **lora_A, **lora_B;  // [n_layers * LT_COUNT] when an adapter was uploaded (NULL where untargeted)
    int n_layers, lora_rank;
    float lora_scale;
} GpuWeights;

// NULL with an error (the device's message) when the upload fails. adapter may be NULL.
GpuWeights *gpu_weights_upload(const Model *m, const Lora *adapter);
void gpu_weights_free(GpuWeights *w);
// Helpers for device buffers: an upload of n floats, zeros; both set *err (and leave NULL) on failure.
float *gpu_upload_floats(const float *h, size_t n, int *err);
float *gpu_zeros(size_t n, int *err);
