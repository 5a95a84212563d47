// defines: exporting a fine-tuned model — the LoRA adapter merged into the base weights (W + s·B·A) and written
// as an HF model directory (fp32 safetensors; config and tokenizer files copied) that transformers loads.
#pragma once
#include "lora.h"

// -1 with an error naming the file and problem. *n_tensors / *n_merged: what was written / merged.
int export_merged_hf(const char *model_dir, const Lora *l, const char *out_dir, int *n_tensors, int *n_merged);
