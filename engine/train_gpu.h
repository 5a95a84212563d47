// defines: LoRA training on the CUDA backend — the model's loss and gradients (transformer.h, LoRA dropout's masks
// included) and AdamW as optim.c, with the model's frozen weights (fp32, or bf16 for mixed precision), the adapter,
// its gradients and moments (always fp32) living on the device.
#pragma once
#include "backprop.h"

typedef struct GpuTrainer GpuTrainer;

// Uploads the model (its weights in wt: LD_F32, or LD_BF16 for bf16 GEMMs with fp32 accumulation) and the adapter
// (its dropout rate included). NULL with an error (no CUDA in this build, no device).
GpuTrainer *gpu_trainer_new(const Model *m, const Lora *lora, LdDtype wt);
void gpu_trainer_free(GpuTrainer *g);
// Loss of one batch with the adapter's gradients accumulated on the device (as train_loss_and_grad), LoRA dropout
// applying with the masks of dropout_seed (the CPU path's lora->dropout_seed). training 0: the loss alone
// (evaluation: no dropout, no backward pass, gradients untouched).
float gpu_trainer_loss_and_grad(GpuTrainer *g, const TrainBatch *b, int *n_counted, int training, uint64_t dropout_seed);
int gpu_trainer_zero_grad(GpuTrainer *g);  // 0, or -1 with an error
// Clip to global norm max_norm (0: off), then one AdamW step (torch semantics). Returns the norm before clipping.
double gpu_trainer_adamw(GpuTrainer *g, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm);
// Copies the adapter back into `lora` (same shape as the one given at creation). 0, or -1 with an error.
int gpu_trainer_download(GpuTrainer *g, Lora *lora);
int gpu_trainer_scale_grad(GpuTrainer *g, float s);  // 0, or -1 with an error
// Joins the other data-parallel ranks' GPUs (every rank calls it): with NCCL in the build, a communicator whose id
// rank 0 sends over d. 0, or -1 with an error. Without it gradients go through host memory.
struct Dist;
int gpu_trainer_join(GpuTrainer *g, struct Dist *d);
// "NCCL" or "MPI through host memory": how gpu_trainer_sum_grad sums.
const char *gpu_trainer_collectives(const GpuTrainer *g, const struct Dist *d);  // "NCCL", or the ranks' own transport through host memory
// Every data-parallel rank's adapter gradients summed on every rank: NCCL on the device, or without it through
// host (an adapter shaped like the one given at creation) over d. 0, or -1 with an error.
int gpu_trainer_sum_grad(GpuTrainer *g, struct Dist *d, Lora *host);
// The adapter and its AdamW state to/from an optimiser over lora_params() of the same adapter (checkpoints,
// resume): values, moments and the step.
struct AdamW;
int gpu_trainer_save_state(GpuTrainer *g, struct AdamW *opt);
int gpu_trainer_load_state(GpuTrainer *g, const struct AdamW *opt);
