// defines: a model's weights on a CUDA device — the embedding table and every linear's matrix in one precision
// (F32, or BF16 for mixed precision; file formats are dequantised on upload), norms, biases and the RoPE
// frequency tables in fp32, and optionally a LoRA adapter's A and B in fp32 — shared by GPU training and
// generation. Only built into the CUDA backend (LLAMADUO_HAVE_CUDA).
#pragma once
#include "lora.h"

typedef struct {  // one layer's weights on the device; NULL where the architecture has none
    void *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;  // [out, in] in GpuWeights.wt
    float *attn_norm, *bq, *bk, *bv, *bo, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;
} GpuLayer;

typedef struct {
    LdDtype wt;             // of embed, lm_head and the layers' matrices: LD_F32 or LD_BF16
    void *embed, *lm_head;  // [vocab, dim]; lm_head == embed when tied
    float *final_norm, *inv_global, *inv_local;
    GpuLayer *layers;
    float **lora_A, **lora_B;  // [n_layers * LT_COUNT] when an adapter was uploaded (NULL where untargeted)
    int n_layers, lora_rank;
    float lora_scale;
} GpuWeights;

// NULL with an error (the device's message) when the upload fails. adapter may be NULL. wt: LD_F32 or LD_BF16
// (each weight rounded to nearest even from its fp32 value).
GpuWeights *gpu_weights_upload(const Model *m, const Lora *adapter, LdDtype wt);
void gpu_weights_free(GpuWeights *w);
// Helpers for device buffers: an upload of n floats, zeros; both set *err (and leave NULL) on failure.
float *gpu_upload_floats(const float *h, size_t n, int *err);
float *gpu_zeros(size_t n, int *err);
