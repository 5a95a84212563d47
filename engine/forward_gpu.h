// defines: the batched forward pass (forward.h's contract) on the CUDA backend (the model itself: transformer.h):
// the model's weights (fp32, or bf16 with fp32 accumulation), the model's adapter (fp32) applied unmerged, and a KV
// cache on the device for n_slots sequences of up to ctx positions, in pages mapped as the sequences grow (bf16
// with bf16 weights, else fp32); logits come back to the host or stay for sampling there.
#pragma once
#include <stdint.h>

#include "kernels_cuda.h"
#include "model.h"

typedef struct GpuModel GpuModel;

// NULL with an error when this build has no CUDA, no device is found, or the upload fails. wt: the precision of
// the weight matrices on the device, LD_F32 or LD_BF16.
GpuModel *gpu_model_new(const Model *m, int n_slots, int ctx, LdDtype wt);
void gpu_model_free(GpuModel *g);
// model_forward on the GPU: token i at position pos[i] of cache slot slot[i]; logits for the wanted rows, copied
// into logits (host) — or, with logits NULL, kept on the device for gpu_model_sample / gpu_model_logits_row.
int gpu_model_forward(GpuModel *g, const int *tokens, const int *slot, const int *pos, int n, const uint8_t *want, float *logits);
// Token choice on the device for the rows the last forward kept (kernels_cuda.h kc_sample: rows[r] for wanted row
// r; picked -1 where the host must decide from gpu_model_logits_row, already penalised).
int gpu_model_sample(GpuModel *g, const KcSampleRow *rows, int n_rows, int *picked);
int gpu_model_logits_row(GpuModel *g, int row, float *dst);  // one kept row [V] to the host
// The sequence in slot is done: its KV pages go back to the pool (positions from 0 again next time).
void gpu_model_release(GpuModel *g, int slot);

typedef struct {
    int pages_used, pages_held, pages_max;  // mapped to sequences; in the pool; n_slots × ctx's worth
    int page_rows;  // positions a page holds
    double bytes_held;  // the pool's device memory (keys and values, every layer)
} GpuKvStats;
GpuKvStats gpu_model_kv_stats(const GpuModel *g);
