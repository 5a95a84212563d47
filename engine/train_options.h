// defines: TrainOptions, every setting of a training run, from one schema (options.h) that `llamaduo train`'s flags,
// the `train:` section of its YAML and the loop's `student.train` all read, and their checks.
#pragma once
#include <cjson/cJSON.h>

#include "options.h"

typedef struct {
    const char *model, *train, *val, *out, *init_adapter, *chat_template;  // paths and names (NULL: not given)
    const char *method, *device, *precision, *targets, *schedule, *long_records;
    int rank, rslora, epochs, tokens_per_step, grad_accum, max_len, full_sequence_loss, seed, eval_every, save_every, threads, zero,
        overlap, activation_checkpointing;
    double alpha, lr, warmup, weight_decay, max_grad_norm, dropout, bucket_mb;  // alpha, lr NaN: the defaults for rank and method
} TrainOptions;

extern const OptionSpec k_train_options[];

void train_options_init(TrainOptions *o);  // the defaults
// A config's mapping of training settings (`train:` of `llamaduo train --config`, `student.train` of a run config;
// section and file name it in messages).
int train_options_from_json(TrainOptions *o, const cJSON *train, const char *section, const char *file);
// What no single option can check: the choices that must agree and the target list; with need_paths, that
// model, train and out are given. Fills in alpha and lr when left to their defaults. 0, or -1 with an error.
int train_options_check(TrainOptions *o, int need_paths);
// The LoRA targets as a mask of LoraTarget bits ("all-linear" or a comma list of PEFT module names); -1 on an
// unknown name (with an error).
long train_targets_mask(const char *targets);
