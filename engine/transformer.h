// defines: the model, written once for every backend: its forward pass (embedding, each block, the head as logits
// or as the fused loss) in transformer_forward.c and its backward pass in transformer_backward.c, both against a
// Backend (backend.h). The CPU path (forward.c, backprop.c) and the GPU path (forward_gpu.c, train_gpu.c) only put
// weights, adapters and token plans where their backend reads them and call these.
#pragma once
#include <stdint.h>

#include "backend.h"
#include "lora.h"

// A model's weights where a backend holds them (host memory for the CPU, device memory for CUDA), model.h's
// layout. Also the shape of full fine-tuning's gradients (every weight fp32).
typedef struct {
    Linear embed, lm_head;  // [vocab, D]; lm_head is embed when tied
    float *final_norm;  // [D]
    const float *inv_freq_global, *inv_freq_local;  // [hd/2]
    LayerWeights *layers;  // [n_layers]
} ModelWeights;

ModelWeights model_weights(const Model *m);  // a view of m's own (host) weights

typedef struct {
    const Backend *be;
    const ModelConfig *cfg;
    ModelWeights w;
    const Lora *adapter;  // A and B in the backend's memory, applied unmerged; NULL: the base alone
    int bf16_acts;  // a training step keeps its activations in bf16 between the passes (be->to_bf16)
    // Activation checkpointing: a training step's forward keeps each block's input alone (fp32), and the backward
    // pass runs each block's forward again from it before going back through the block, so activations take one
    // block's memory, not every block's, for one more forward pass (bf16_acts does not apply).
    int recompute;
} Transformer;

// Where each of one call's n tokens sits and which keys it sees: arrays [n] in the backend's memory.
typedef struct {
    int n;
    int *tokens, *pos;  // ids; RoPE positions
    int *lo_global, *lo_local, *hi;  // key rows lo..hi (inclusive) on global and on sliding-window layers
    int *kv_row;  // KV-cache calls: the token's row in a layer's cache
    // Tokens 0 .. n_single-1 are served token by token (decoding: their lo and hi count from their sequence's first
    // row, kv_base); the rest in tiles of consecutive queries, their lo and hi rows of k/v as they are (a packed
    // batch's own rows, or a prefill's rows of the cache). kv_base is NULL where n_single is 0.
    int n_single;
    int *kv_base;
} TokenPlan;

// A batch of packed records (host memory): tokens[T], targets[T] (-100 = not trained), positions[T] restarting at
// each record, record starts[n_records] (attention never crosses a record). A data-parallel rank's share of a
// packed sequence says where it lies in the whole: row0, its first token's row there (dropout's masks follow the
// whole's rows), and loss_norm, the whole's counted targets (the mean's divisor; 0: this batch's own count).
typedef struct TrainBatch {
    const int *tokens, *targets, *positions, *starts;
    int T, n_records;
    int row0, loss_norm;
} TrainBatch;

// A packed training batch: causal within each record, the window on local layers; keys are the
// batch's own tokens (kv_row and kv_base NULL). 0, or -1 with the backend's error.
int token_plan_packed(const Backend *be, const ModelConfig *c, const TrainBatch *b, TokenPlan *out);
// Token i at position pos[i] of KV-cache slot slot[i] (ctx rows per slot); keys are the slot's rows 0..pos[i]. The
// plan picks how the backend serves them: the leading short runs of a sequence's tokens (decode steps, which the
// engine puts first) token by token, the prefill chunks after them in tiles.
int token_plan_cached(const Backend *be, const ModelConfig *c, const int *tokens, const int *slot, const int *pos, int n, int ctx,
                      TokenPlan *out);
void token_plan_free(const Backend *be, TokenPlan *p);

// A KV cache in the backend's memory: cache.k and cache.v [n_layers][rows][Hkv*hd] in cache.type, each layer's
// rows in the same pages where cache.pages is set (the plan's rows then virtual: slot × ctx + position).
typedef struct {
    KvRows cache;  // layer 0's
    size_t rows;  // per layer
} KvSpace;

// Inference: runs the plan's tokens (their keys and values written into kv at kv_row) and writes logits [n_out, V]
// for the tokens out_rows[n_out] (both in the backend's memory). 0, or -1 with the backend's error.
int transformer_logits(const Transformer *t, const TokenPlan *p, const KvSpace *kv, const int *out_rows, int n_out, float *logits);

// What a training step asks besides the loss; every pointer in the backend's memory.
typedef struct {
    Lora *adapter_grad;  // accumulated (+=) gradients of the adapter's A and B, or NULL
    ModelWeights *weight_grad;  // accumulated gradients of every weight (full fine-tuning, be->weight_grads), or NULL
    float dropout;  // LoRA dropout on the adapter's inputs (0: off)
    uint64_t dropout_seed;  // the masks are a function of it (dropout_mask.h)
    int row0, loss_norm;  // a share of a larger batch (TrainBatch): its first row there, the whole's count
    // Called as the backward pass finishes gradients, so they can be sent while it goes on (NULL: not called):
    // layer n_layers once the head's and the final norm's are final, then each block's l after block l, then -1
    // after the embedding's (Param.layer's numbering). 0, or -1 to end the pass with its error.
    int (*grads_final)(void *ctx, int layer);
    void *grads_final_ctx;
} TrainStep;

// *loss gets the mean cross-entropy over the plan's tokens with targets[n] (host; -100: not counted), *n_counted
// the tokens that count. step NULL: evaluation (no dropout, no backward). Otherwise the gradients are accumulated
// through the backward pass. 0 (the loss itself may be NaN: a diverged run), or -1 with the backend's error.
int transformer_loss(const Transformer *t, const TokenPlan *p, const int *targets, const TrainStep *step, float *loss, int *n_counted);

// ---- between the two passes (transformer_forward.c keeps these, transformer_backward.c reads them)

typedef struct {  // what one block's forward keeps; its normed inputs and gated activation are recomputed
    float *xin, *q_pre, *k_pre, *q, *k, *v, *att, *lse, *o_pre, *xmid, *gt, *u, *dn_pre;  // lse [n, Hq]
    // [r, n] (drop(x)·Aᵀ)ᵀ of each targeted linear (NULL: not targeted), end to end in ax_all in target order like
    // the adapter's A (lora_place), so the linears sharing an input keep theirs as one stack (kernels.h k_lora_linears)
    float *ax_all, *ax[LT_COUNT];
} LayerActs;

typedef struct {
    LayerActs *layers;  // [n_layers]
    float *x_final;  // [n, D] the residual stream into the final norm
    float *dx_final;  // [n, D] the loss's gradient at the final norm's output
} Activations;

// The forward of a training step (step != NULL: *keep gets what the backward needs, the head's weight gradient
// accumulated) or of an evaluation (step NULL, keep NULL). 0, or -1 with the backend's error.
int transformer_forward_loss(const Transformer *t, const TokenPlan *p, const int *targets, const TrainStep *step, Activations **keep,
                             float *loss, int *n_counted);
int transformer_backward(const Transformer *t, const TokenPlan *p, const Activations *a, const TrainStep *step);
// Between bf16 and fp32 in place (t->bf16_acts), and freeing.
int layer_acts_convert(const Transformer *t, LayerActs *a, int n, int to_bf16);
void layer_acts_free(const Backend *be, LayerActs *a);
void activations_free(const Transformer *t, Activations *a);
// t->recompute: block l's forward again from its input xin[n, D] (what the forward kept), *a getting what a
// training step's forward keeps of it, its xin being the caller's own (set it NULL before layer_acts_free). 0, or
// -1 with the backend's error.
int transformer_recompute_block(const Transformer *t, const TokenPlan *p, const TrainStep *step, int l, const float *xin, LayerActs *a);

// The widest input of any linear (dim, Hq*hd or ffn_dim): the width of dropout's masked-input buffers.
int transformer_widest_input(const ModelConfig *c);

// The adapter's pair on (layer, target), or NULL when there is no adapter or it does not target that linear.
const LoraPair *adapter_pair(const Lora *adapter, int layer, LoraTarget target);
// The stack of the adapters on layer l's linears `targets` (one input; ax[i] the i-th one's kept axT[r,n]): *A and
// *axT the first adapted one's, both NULL when none is adapted. -1 when the adapted ones' A or ax do not lie end to
// end (each must then run alone).
int adapter_stack(const Lora *ad, int l, const LoraTarget *targets, int count, float *const *ax, int n, const float **A, float **axT);
