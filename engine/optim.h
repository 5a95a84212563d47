// defines: the trainable parameters of a run as one flat list of fp32 tensors (a LoRA adapter's A and B, or every
// weight of a model for full fine-tuning) and AdamW over that list, with its checkpoint file.
#pragma once
#include "lora.h"

typedef struct {
    char name[160];
    float *p, *g;  // values and gradients [n]
    size_t n;
    int decay;  // weight decay applies: matrices yes; norm weights and biases no (HF Trainer's grouping)
    // the block whose backward pass finishes its gradient: 0 .. n_layers-1; n_layers: the final norm's and an
    // untied head's (finished before the blocks); -1: the embedding's (finished last)
    int layer;
} Param;

// The adapter's tensors (with their gradients in g, shaped like l), in layer/target order.
int lora_params(Lora *l, Lora *g, Param **out);
// Every weight of m (trainable, see model_make_trainable) with its gradient in g (model_grad_new), HF names.
int model_params(Model *m, Model *g, Param **out);

typedef struct AdamW {
    Param *v;
    int n;
    float **m, **s;  // first and second moment estimates of elements [lo[i], hi[i]) of each parameter
    size_t *lo, *hi;  // the elements this optimiser updates: all of them, or a shard (adamw_shard)
    int step;  // optimiser steps taken (bias correction counts from 1)
} AdamW;

AdamW *adamw_new(Param *v, int n);  // takes v
void adamw_free(AdamW *o);
// ZeRO-1: from now on o keeps moments for, and updates, only chunk `rank` of `world` of every parameter
// (dist_chunk's), given that chunk's summed gradients; the caller shares the updated values among the ranks.
// Call before any step or load.
void adamw_shard(AdamW *o, int rank, int world);
int adamw_sharded(const AdamW *o);
size_t adamw_state_floats(const AdamW *o);  // the moments' size in floats (both of them)
void adamw_zero_grad(AdamW *o);
void adamw_scale_grad(AdamW *o, float s);
// Clips the gradients to global norm max_norm (torch's clip_grad_norm_; 0 = off), then one AdamW step (torch
// semantics). Returns the norm before clipping.
double adamw_step(AdamW *o, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm);
// The two halves of a step, for a shard: the squares of the gradients it updates (summed over the ranks, they
// give the global norm), then the step itself, its gradients clipped against that norm.
double adamw_sumsq(const AdamW *o);
void adamw_apply(AdamW *o, double norm, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm);
// Values and moments of every parameter plus the step, as one safetensors file (written atomically; o whole, not
// a shard); loading checks that names and sizes match (a checkpoint of other settings is refused, naming the
// tensor) and a shard takes its own part of the moments.
int adamw_save(const AdamW *o, const char *path);
int adamw_load(AdamW *o, const char *path);
// The same file where the moments live elsewhere (a GPU's memory): o's values and step are written, and each
// moment (part 1: m, 2: s) of parameter i, all v[i].n of it, comes from moment() into dst. Loading fills o's
// values and step and hands each moment, whole (from the file's mapping), to moment(). Either callback returns
// 0, or -1 with an error.
typedef int (*AdamWMomentOut)(int part, int i, float *dst, void *ctx);
typedef int (*AdamWMomentIn)(int part, int i, const float *all, void *ctx);
int adamw_save_with(const AdamW *o, const char *path, AdamWMomentOut moment, void *ctx);
int adamw_load_with(AdamW *o, const char *path, AdamWMomentIn moment, void *ctx);
// Frees the host's moments, for an optimiser whose state is kept elsewhere (adamw_save_with/adamw_load_with only).
void adamw_drop_moments(AdamW *o);
