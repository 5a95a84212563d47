// llamaduo export: merge a LoRA adapter into its base model and write an HF model directory.
#include <string.h>

#include "cli.h"
#include "export.h"
#include "util.h"

int cmd_export(int argc, char **argv) {
    Args a = {argc, argv, 1, "export"};
    const char *model = NULL, *adapter = NULL, *out = NULL;
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("usage: llamaduo export --model HF_DIR --adapter ADAPTER_DIR --out DIR\n\n"
                   "Merges the LoRA adapter into the base weights (W + s·B·A) and writes an HF model directory: every\n"
                   "tensor as fp32 in model.safetensors, with config.json and the tokenizer files copied.\n");
            return 0;
        }
        if (arg_value(&a, "--model", &model) || arg_value(&a, "--adapter", &adapter) || arg_value(&a, "--out", &out)) continue;
        arg_unknown(&a);
    }
    if (!model || !adapter || !out) die("export needs --model, --adapter and --out (see --help)");
    if (!ld_is_dir(model)) die("%s: export needs the base model as an HF directory (GGUF input is not supported yet)", model);
    Model *m = load_model_or_die(model);
    Lora *l = lora_load_peft(&m->cfg, adapter);
    if (!l) die("%s", ld_last_error());
    int total, merged;
    if (export_merged_hf(model, l, out, &total, &merged)) die("%s", ld_last_error());
    fprintf(stderr, "export: %d tensors (%d merged with the adapter) -> %s/model.safetensors\n", total, merged, out);
    lora_free(l);
    model_free(m);
    return 0;
}
