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
    float *data;  // every A and B, laid out by lora_place (owned by lora_new's adapters; a view's is its arena)
} Lora;

// The adapter's matrices end to end in one buffer of lora_floats(l) floats at base: per layer, the targeted linears'
// A in target order, then their B. So the A of q, k and v (and of gate and up), which read one input, stack into one
// [m·r, in] matrix that the backends shrink with one product (kernels.h k_lora_linears). Sets l->w's pointers and
// l->data; lora_params lists the parameters in the same order.
size_t lora_floats(const Lora *l);
void lora_place(Lora *l, float *base);

// Zero-initialised adapter (A and B zero) on the targets in mask (bit LT_*).
Lora *lora_new(const ModelConfig *c, int rank, float alpha, int rslora, unsigned target_mask);
void lora_free(Lora *l);
void lora_zero(Lora *l);
void lora_scale(Lora *l, float s);  // every A and B times s

// PEFT adapter directories: adapter_config.json + adapter_model.safetensors with PEFT's tensor names
// (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ...), loadable by PEFT.
int lora_save_peft(const Lora *l, const char *dir, const char *base_model);
Lora *lora_load_peft(const ModelConfig *c, const char *dir);  // NULL with an error naming the file and problem
