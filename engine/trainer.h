// defines: the Trainer, a whole training run behind one interface: the trained parameters (a LoRA adapter as PEFT
// initialises it or from an earlier one, or every weight), packing and shuffling each epoch, the learning-rate
// schedule, gradient accumulation, AdamW, evaluation, metrics.jsonl, checkpoints and resume, and the output (a PEFT
// adapter or the whole model). Steps run on the CPU backend (backprop.h) or the CUDA backend (train_gpu.h).
#pragma once
#include "train_data.h"
#include "train_options.h"

typedef struct {  // the run as set up, for the caller's summary line
    int records, val_records, per_epoch, total_steps, on_gpu;
    size_t n_params;
    char device[256];  // "cpu", or the GPU's description
    int ranks;  // data-parallel ranks (1: this process alone)
    int resumed_ranks;  // after trainer_resume: the ranks that wrote the checkpoint
    const char *collectives;  // how the ranks sum their gradients ("MPI", "NCCL", ...)
    int zero;  // AdamW's moments sharded over the ranks (ZeRO-1)
    size_t state_floats, whole_state_floats;  // the moments this rank keeps, and all of them
    int buckets;  // the gradients summed during the backward pass in this many buckets (0: after it)
} TrainerInfo;

typedef struct {  // after each optimiser step (step 0: the validation loss before training)
    int step, total, epoch, evaluated;
    double loss, lr, grad_norm, val_loss, tokens_per_s, eta_s;
    long tokens;
} TrainProgress;

typedef struct Trainer Trainer;

// o must have passed train_options_check; m, the datasets and o stay the caller's and must outlive the trainer (full
// fine-tuning makes m's weights trainable). dist (NULL: one rank) makes it one rank of a data-parallel run: every
// rank is given the same data and options, takes its share of every packed sequence (whole records) and of the
// validation, and the gradients are summed before clipping and AdamW, so every rank holds the same weights after
// every step and the losses are those of one process with the same tokens_per_step. Rank 0 alone writes
// metrics.jsonl, checkpoints and the result. NULL with an error.
struct Dist;
Trainer *trainer_new(Model *m, const TrainOptions *o, const TrainData *train, const TrainData *val, struct Dist *dist);
void trainer_info(const Trainer *t, TrainerInfo *out);
// From o->out/checkpoint: parameters, optimiser state and position; metrics.jsonl keeps the lines up to it.
// Returns the step resumed after, or -1 with an error.
int trainer_resume(Trainer *t);
// Every remaining step; on_step (may be NULL) hears of each. 0, or -1 with an error (a step's failure, a
// checkpoint that cannot be written).
int trainer_run(Trainer *t, void (*on_step)(const TrainProgress *, void *), void *ctx);
// Writes the result into o->out (adapter/, model/ or model.gguf); *path gets it (heap string). 0, or -1. On a
// rank other than 0 nothing is written and *path is NULL.
int trainer_save(Trainer *t, char **path);
void trainer_free(Trainer *t);
