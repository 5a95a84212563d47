// defines: the training loss (mean cross-entropy over the counted targets of a packed batch) and its gradients
// through the whole model on the CPU path: for a LoRA adapter's A and B, for every weight (full fine-tuning),
// or both.
#pragma once
#include "lora.h"

// A batch of packed records: tokens[T], targets[T] (-100 = not trained), positions[T] restarting at each
// record, record starts[n_records] (attention never crosses a record).
typedef struct {
    const int *tokens, *targets, *positions, *starts;
    int T, n_records;
} TrainBatch;

// Rows of logits per chunk of the fused head + loss (k_linear_cross_entropy): ~32 MiB of them for any vocabulary.
int head_chunk_rows(int vocab);

// The loss of m (with `lora` applied when not NULL) on b. Gradients are accumulated (+=) into lora_grad (same
// shape as lora) and into model_grad (from model_grad_new; m's weights must then be trainable fp32, see
// model_make_trainable); either or both may be NULL — both NULL evaluates (no dropout).
// *n_counted gets the number of counted targets. Returns NAN with an error on bad input.
float train_loss_and_grad(const Model *m, const Lora *lora, Lora *lora_grad, Model *model_grad, const TrainBatch *b,
                          int *n_counted);
