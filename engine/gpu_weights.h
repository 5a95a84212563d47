// defines: a model's weights on a CUDA device as transformer.h's ModelWeights — the embedding table and every
// linear's matrix in one precision (F32, or BF16 for mixed precision; file formats are dequantised on upload), norms,
// biases and the RoPE frequency tables in fp32 — and LoRA adapters on the device (a Lora whose A and B are device
// buffers, always fp32), shared by GPU training and generation. Only built into the CUDA backend
// (LLAMADUO_HAVE_CUDA).
#pragma once
#include "transformer.h"

typedef struct {
    LdDtype wt;  // of embed, lm_head and the layers' matrices: LD_F32 or LD_BF16
    ModelWeights w;  // device pointers
    int n_layers;
} GpuWeights;

// NULL with an error (the device's message) when the upload fails. wt: LD_F32 or LD_BF16 (each weight rounded to
// nearest even from its fp32 value).
GpuWeights *gpu_weights_upload(const Model *m, LdDtype wt);
void gpu_weights_free(GpuWeights *w);

// A device copy of the adapter `like` (rank, scale, targets, every A and B). NULL with an error on failure.
Lora *gpu_lora_upload(const Lora *like);
void gpu_lora_free(Lora *d);

// Trained parameters laid end to end in one device buffer, so that the data-parallel collectives and ZeRO-1's
// shards work on it whole: these shells point into `arena` (device, fp32) and own none of it.
// An adapter shaped like `like`: its A and B consecutive slices of arena in lora_place's (and lora_params') order.
Lora *gpu_lora_view(const Lora *like, float *arena);
// A model shaped like m (its config; every weight fp32): each weight model_tensors() lists a consecutive slice of
// arena in that order (model_params()' order), the head tied where m's is. No RoPE tables: the caller's.
Model *gpu_model_view(const Model *m, float *arena);
void gpu_view_free(Lora *lora_view, Model *model_view);  // the shells (either may be NULL), not the arena
