// defines: the trainable parameters of a run as one flat list of fp32 tensors (a LoRA adapter's A and B, or every
// weight of a model for full fine-tuning) and AdamW over that list, with its checkpoint file.
#pragma once
#include "lora.h"

typedef struct {
    char name[160];
    float *p, *g;  // values and gradients [n]
    size_t n;
    int decay;  // weight decay applies: matrices yes; norm weights and biases no (HF Trainer's grouping)
} Param;

// The adapter's tensors (with their gradients in g, shaped like l), in layer/target order.
int lora_params(Lora *l, Lora *g, Param **out);
// Every weight of m (trainable, see model_make_trainable) with its gradient in g (model_grad_new), HF names.
int model_params(Model *m, Model *g, Param **out);

typedef struct AdamW {
    Param *v;
    int n;
    float **m, **s;  // first and second moment estimates, per parameter
    int step;  // optimiser steps taken (bias correction counts from 1)
} AdamW;

AdamW *adamw_new(Param *v, int n);  // takes v
void adamw_free(AdamW *o);
void adamw_zero_grad(AdamW *o);
void adamw_scale_grad(AdamW *o, float s);
// Clips the gradients to global norm max_norm (torch's clip_grad_norm_; 0 = off), then one AdamW step (torch
// semantics). Returns the norm before clipping.
double adamw_step(AdamW *o, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm);
// Values and moments of every parameter plus the step, as one safetensors file (written atomically); loading
// checks that names and sizes match (a checkpoint of other settings is refused, naming the tensor).
int adamw_save(const AdamW *o, const char *path);
int adamw_load(AdamW *o, const char *path);
