// defines: training on the CUDA backend — the model's loss and gradients (transformer.h, LoRA dropout's masks
// included) and AdamW as optim.c — of a LoRA adapter over the frozen base (fp32, or bf16 for mixed precision), or of
// every weight (full fine-tuning, fp32). The trained parameters, their gradients and AdamW's moments live on the
// device, the parameters and gradients each laid end to end in one buffer in the host optimiser's order
// (lora_params() / model_params()): summing them over data-parallel ranks is one collective, and ZeRO-1 splits them
// into equal chunks, one per rank.
#pragma once
#include "backprop.h"
#include "optim.h"

typedef struct GpuTrainer GpuTrainer;
struct Dist;

// lora given: the adapter (its dropout rate included) over m's base uploaded in wt (LD_F32, or LD_BF16 for bf16
// GEMMs with fp32 accumulation). lora NULL: full fine-tuning of m, whose weights must be trainable fp32
// (model_make_trainable), wt LD_F32. NULL with an error (no CUDA in this build, no device, not enough memory).
GpuTrainer *gpu_trainer_new(const Model *m, const Lora *lora, LdDtype wt);
void gpu_trainer_free(GpuTrainer *g);
void gpu_trainer_recompute(GpuTrainer *g, int on);  // activation checkpointing from now on (Transformer.recompute)
// Makes g one of d's data-parallel ranks (every rank calls it once, before training or resuming): the gradients
// summed by NCCL when nccl (rank 0's communicator id sent over d), otherwise through host memory over d's own
// transport; zero: ZeRO-1 (with NCCL only), each rank keeping AdamW's moments for its chunk of the parameters
// alone. 0, or -1.
int gpu_trainer_distribute(GpuTrainer *g, struct Dist *d, int nccl, int zero);
int gpu_trainer_sharded(const GpuTrainer *g);  // whether ZeRO-1 took
// With NCCL (after gpu_trainer_distribute): from now on the gradients of a step's last batch are summed while its
// backward pass goes on, in buckets of the parameters that the pass finishes together, about mib MiB each (0: each
// block's alone), each started as soon as its last gradient is final. Returns the buckets (0 without NCCL:
// nothing changes).
int gpu_trainer_overlap(GpuTrainer *g, double mib);
// The next training batch is the step's last: its backward pass starts the buckets (when there are any), and
// gpu_trainer_sum_grad starts the rest and waits for them all.
void gpu_trainer_sum_in_backward(GpuTrainer *g);
// "NCCL", or d's transport through host memory: how gpu_trainer_sum_grad sums.
const char *gpu_trainer_collectives(const GpuTrainer *g, const struct Dist *d);
size_t gpu_trainer_state_floats(const GpuTrainer *g);  // AdamW's moments held on this rank's device
// Loss of one batch with the gradients accumulated on the device (as train_loss_and_grad), LoRA dropout applying
// with the masks of dropout_seed (the CPU path's lora->dropout_seed). training 0: the loss alone (evaluation: no
// dropout, no backward pass, gradients untouched).
float gpu_trainer_loss_and_grad(GpuTrainer *g, const TrainBatch *b, int *n_counted, int training, uint64_t dropout_seed);
int gpu_trainer_zero_grad(GpuTrainer *g);  // 0, or -1 with an error
int gpu_trainer_scale_grad(GpuTrainer *g, float s);  // 0, or -1 with an error
// Every rank's gradients summed (ZeRO-1: each rank's chunk holds its sum). 0, or -1 with an error.
int gpu_trainer_sum_grad(GpuTrainer *g);
// Clip to global norm max_norm (0: off), then one AdamW step (torch semantics; ZeRO-1: each rank steps its chunk,
// then every chunk goes to every rank). Returns the norm before clipping, or NAN with an error.
double gpu_trainer_adamw(GpuTrainer *g, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm);
// The trained values into host parameters of the same order and shapes as the ones given at creation (n of them).
int gpu_trainer_values(GpuTrainer *g, const Param *host, int n);
int gpu_trainer_download(GpuTrainer *g, Lora *lora);  // the adapter into `lora` (same shape). 0, or -1
// A checkpoint's state file (adamw_save's): every rank calls it, rank 0 writes path. The values go through opt's
// host parameters (same order and shapes as at creation), the moments from the devices into the file one
// parameter at a time (with ZeRO-1 each rank's chunk gathered on rank 0), so no rank keeps a host copy of them.
int gpu_trainer_write_state(GpuTrainer *g, AdamW *opt, const char *path);
// Reads one (every rank, from a filesystem they share): values through opt's parameters, each rank's part of the
// moments from the file's mapping to its device, and the step.
int gpu_trainer_read_state(GpuTrainer *g, AdamW *opt, const char *path);
