// defines: exporting a trained model — its weights, with a LoRA adapter merged in (W + s·B·A) when one is given —
// as an HF model directory (fp32 safetensors; the base's config and tokenizer files copied) that transformers
// loads, or as a GGUF (F32, F16, BF16 or Q8_0; the base GGUF's metadata: hyperparameters, tokenizer, chat
// template) that llama.cpp loads. Tensors are made and written one at a time.
#pragma once
#include "lora.h"

// The base must have been loaded from an HF directory. -1 with an error naming the file and problem.
// *n_tensors / *n_merged: how many tensors were written / had an adapter merged in.
int export_hf(Model *m, const Lora *l, const char *out_dir, int *n_tensors, int *n_merged);
// The base must have been loaded from a GGUF (its metadata is carried over); type is the weights' type (norms
// and biases stay F32; a matrix whose rows are not whole Q8_0 blocks is written F16).
int export_gguf(Model *m, const Lora *l, LdDtype type, const char *out_path, int *n_tensors, int *n_merged);
