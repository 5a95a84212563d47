// defines: the linear layers a LoRA adapter can target and their PEFT module names, apart from the adapter itself so
// the training options (train_options.c) can be read and checked without the engine.
#pragma once

typedef enum { LT_Q, LT_K, LT_V, LT_O, LT_GATE, LT_UP, LT_DOWN, LT_COUNT } LoraTarget;

const char *lora_target_name(LoraTarget t);  // PEFT's module names: q_proj ... down_proj
