// defines: the batched forward pass (forward.h's contract) on a CUDA GPU: the model's weights (fp32, or bf16 with
// fp32 accumulation), the model's adapter (fp32) applied unmerged, and a KV cache of n_slots × ctx positions on the device; logits come back to the host.
#pragma once
#include <stdint.h>

#include "model.h"

typedef struct GpuModel GpuModel;

// NULL with an error when this build has no CUDA, no device is found, or the upload fails. wt: the precision of
// the weight matrices on the device, LD_F32 or LD_BF16.
GpuModel *gpu_model_new(const Model *m, int n_slots, int ctx, LdDtype wt);
void gpu_model_free(GpuModel *g);
// model_forward on the GPU: token i at position pos[i] of cache slot slot[i]; logits for the wanted rows.
int gpu_model_forward(GpuModel *g, const int *tokens, const int *slot, const int *pos, int n, const uint8_t *want, float *logits);
