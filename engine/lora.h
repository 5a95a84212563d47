// defines: LoRA adapters on the linear layers, PEFT's layout and names — A [r, in], B [out, r],
// y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ with s = alpha/r (or alpha/sqrt(r) for rsLoRA) — and their PEFT files.
#pragma once
#include "lora_targets.h"
#include "model.h"

typedef struct {
    float *A, *B;  // [r, in], [out, r]; NULL when the layer's linear is not targeted
    int in, out;
} LoraPair;

typedef struct Lora {
    int rank, n_layers;
    float scale, alpha;
    int rslora;
    float dropout;  // on the adapter's input while training (0 = off)
    uint64_t dropout_seed;  // set per step by the trainer: the masks are a function of it
    LoraPair *w;  // [n_layers][LT_COUNT]
} Lora;

// Zero-initialised adapter (A and B zero) on the targets in mask (bit LT_*).
Lora *lora_new(const ModelConfig *c, int rank, float alpha, int rslora, unsigned target_mask);
void lora_free(Lora *l);
void lora_zero(Lora *l);
void lora_scale(Lora *l, float s);  // every A and B times s

// PEFT adapter directories: adapter_config.json + adapter_model.safetensors with PEFT's tensor names
// (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ...), loadable by PEFT.
int lora_save_peft(const Lora *l, const char *dir, const char *base_model);
Lora *lora_load_peft(const ModelConfig *c, const char *dir);  // NULL with an error naming the file and problem
