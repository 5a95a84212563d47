#include "lora_targets.h"

static const char *k_target_names[LT_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

const char *lora_target_name(LoraTarget t) { return k_target_names[t]; }
