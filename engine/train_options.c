#include "train_options.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lora_targets.h"
#include "util.h"

#define T(field) offsetof(TrainOptions, field)
const OptionSpec k_train_options[] = {
    {"model", OPT_STR, T(model), 0, 0, NULL, NULL, "the base model: an HF directory or a .gguf file"},
    {"train", OPT_STR, T(train), 0, 0, NULL, NULL, "training records (JSONL, {\"messages\": [...]}; loss on assistant turns)"},
    {"val", OPT_STR, T(val), 0, 0, NULL, NULL, "validation records: loss every eval_every steps and at the end"},
    {"out", OPT_STR, T(out), 0, 0, NULL, NULL, "the output directory (adapter/ or model, metrics.jsonl, checkpoint/)"},
    {"method", OPT_CHOICE, T(method), 0, 0, "lora", "lora|full", "LoRA, or every weight (writes DIR/model or DIR/model.gguf, fp32)"},
    {"device", OPT_CHOICE, T(device), 0, 0, "auto", "auto|cuda|cpu", "where training runs, LoRA or full (auto: the GPU when one is found)"},
    {"precision", OPT_CHOICE, T(precision), 0, 0, "bf16", "bf16|fp32",
     "the GPU's weights: LoRA's frozen base, or full fine-tuning's forward copies of its fp32 masters (bf16: fp32 "
     "accumulation, tensor cores; fp32: true fp32, the reference)"},
    {"rank", OPT_INT, T(rank), 1, 1024, "8", NULL, "LoRA rank"},
    {"alpha", OPT_NUM, T(alpha), 0, 1e6, "nan", NULL, "LoRA alpha (default 2 x rank)"},
    {"rslora", OPT_BOOL, T(rslora), 0, 1, NULL, NULL, "scale by alpha/sqrt(rank) (rsLoRA)"},
    {"dropout", OPT_NUM, T(dropout), 0, 0.95, "0.05", NULL, "LoRA dropout on the adapter's input while training"},
    {"targets", OPT_STR, T(targets), 0, 0, "all-linear", NULL,
     "all-linear or a comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"},
    {"init_adapter", OPT_STR, T(init_adapter), 0, 0, NULL, NULL, "start from this PEFT adapter's values (same rank and targets)"},
    {"epochs", OPT_INT, T(epochs), 1, 100000, "3", NULL, "passes over the data"},
    {"lr", OPT_NUM, T(lr), 0, 10, "nan", NULL, "peak learning rate (default 2e-4 LoRA, 1e-5 full)"},
    {"schedule", OPT_CHOICE, T(schedule), 0, 0, "cosine", "cosine|linear|constant", "learning-rate schedule after warmup"},
    {"warmup", OPT_NUM, T(warmup), 0, 1, "0.1", NULL, "share of steps warming up linearly"},
    {"weight_decay", OPT_NUM, T(weight_decay), 0, 10, "0", NULL, "AdamW weight decay"},
    {"max_grad_norm", OPT_NUM, T(max_grad_norm), 0, 1e6, "1.0", NULL, "clip the gradients' global norm (0: off)"},
    {"tokens_per_step", OPT_INT, T(tokens_per_step), 8, 1 << 20, "1024", NULL, "records packed into one sequence of at most N tokens"},
    {"grad_accum", OPT_INT, T(grad_accum), 1, 4096, "1", NULL, "micro-batches per optimiser step"},
    {"max_len", OPT_INT, T(max_len), 8, 1 << 20, "1024", NULL, "longest record in tokens"},
    {"long_records", OPT_CHOICE, T(long_records), 0, 0, "skip", "skip|truncate|error", "what happens to a record longer than max_len"},
    {"full_sequence_loss", OPT_BOOL, T(full_sequence_loss), 0, 1, NULL, NULL, "train on every token, not just the assistant turns"},
    {"seed", OPT_INT, T(seed), 0, 2147483647, "1", NULL, "data order and LoRA initialisation"},
    {"eval_every", OPT_INT, T(eval_every), 0, 1 << 30, "0", NULL, "validation interval in steps (0: each epoch's end)"},
    {"save_every", OPT_INT, T(save_every), 0, 1 << 30, "20", NULL, "checkpoint every N steps into DIR/checkpoint (0: never)"},
    {"chat_template", OPT_STR, T(chat_template), 0, 0, NULL, NULL, "override the model's chat template family"},
    {"threads", OPT_INT, T(threads), 0, 1024, "0", NULL, "CPU threads (0: all cores)"},
    {"zero", OPT_INT, T(zero), 0, 1, "1", NULL,
     "full fine-tuning on several ranks: 1 shards AdamW's moments across them (ZeRO-1), 0 keeps them whole on each"},
    {"activation_checkpointing", OPT_BOOL, T(activation_checkpointing), 0, 1, NULL, NULL,
     "keep only each block's input through the forward pass and run the block again going back: a block's activations "
     "in memory instead of every block's, for one more forward pass"},
    {"overlap", OPT_INT, T(overlap), 0, 1, "1", NULL,
     "GPU ranks over NCCL: 1 sums each bucket of gradients while the backward pass goes on (a step's last micro-batch), "
     "0 sums them all after it"},
    {"bucket_mb", OPT_NUM, T(bucket_mb), 0, 1e6, "25", NULL,
     "the overlap's buckets: the gradients of consecutive layers, about N MiB each (0: a layer each)"},
    {NULL},
};
#undef T

void train_options_init(TrainOptions *o) {
    memset(o, 0, sizeof *o);
    options_defaults(k_train_options, o);  // alpha and lr NaN: not given
}


int train_options_from_json(TrainOptions *o, const cJSON *train, const char *section, const char *file) {
    return options_from_json(k_train_options, o, train, section, file);
}

long train_targets_mask(const char *targets) {
    if (!strcmp(targets, "all-linear")) return (1L << LT_COUNT) - 1;
    long mask = 0;
    char *copy = ld_xstrdup(targets), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int t = 0; t < LT_COUNT; t++)
            if (!strcmp(tok, lora_target_name((LoraTarget)t))) mask |= 1L << t, found = 1;
        if (!found) {
            ld_set_error("targets: unknown module '%s' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)", tok);
            free(copy);
            return -1;
        }
    }
    free(copy);
    if (!mask) ld_set_error("targets: no module named in '%s'", targets);
    return mask ? mask : -1;
}

int train_options_check(TrainOptions *o, int need_paths) {
    int full = !strcmp(o->method, "full");
    if (need_paths && (!o->model || !o->train || !o->out)) {
        ld_set_error("training needs model, train and out (see llamaduo train --help)");
        return -1;
    }
    if (o->init_adapter && full) {
        ld_set_error("init_adapter is for LoRA training, not method full");
        return -1;
    }
    if (train_targets_mask(o->targets) < 0) return -1;
    if (isnan(o->lr)) o->lr = full ? 1e-5 : 2e-4;
    if (isnan(o->alpha)) o->alpha = 2.0 * o->rank;
    return 0;
}
