// defines: the training loss (mean cross-entropy over the counted targets of a packed batch) and its gradients
// through the whole model on the CPU backend (the model itself: transformer.h): for a LoRA adapter's A and B, for
// every weight (full fine-tuning), or both.
#pragma once
#include "lora.h"
#include "transformer.h"

// The loss of m (with `lora` applied when not NULL) on b. Gradients are accumulated (+=) into lora_grad (same
// shape as lora) and into model_grad (from model_grad_new; m's weights must then be trainable fp32, see
// model_make_trainable); either or both may be NULL — both NULL evaluates (no dropout). LoRA dropout applies with
// lora->dropout and the masks of lora->dropout_seed.
// *n_counted gets the number of counted targets. recompute: activation checkpointing (Transformer.recompute).
// Returns NAN with an error on bad input.
float train_loss_and_grad(const Model *m, const Lora *lora, Lora *lora_grad, Model *model_grad, const TrainBatch *b, int *n_counted,
                          int recompute);

// The batch's token ids and targets inside m's vocabulary: 0, or -1 with an error naming the first that is not.
int train_batch_check(const ModelConfig *c, const TrainBatch *b);
