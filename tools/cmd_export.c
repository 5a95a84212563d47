// llamaduo export: a base model with a LoRA adapter merged in (or a fully fine-tuned model re-encoded) written as an
// HF model directory or a GGUF.
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "export.h"
#include "util.h"

static const char *k_help =
    "usage: llamaduo export --model BASE [--adapter DIR] --out PATH [--format hf|gguf] [--type f16|bf16|q8_0|f32]\n\n"
    "Merges the LoRA adapter into the base weights (W + s·B·A) and writes the model:\n"
    "  --format hf    an HF model directory: every tensor fp32 in model.safetensors, config.json and the tokenizer\n"
    "                 files copied from the base (the base must be an HF directory). Default for an HF base.\n"
    "  --format gguf  one GGUF file carrying the base GGUF's metadata (hyperparameters, tokenizer, chat template),\n"
    "                 matrices in --type (default f16), norms and biases f32. Default for a GGUF base.\n"
    "Without --adapter the model is written as it is (to re-encode a fully fine-tuned model, say).\n";

int cmd_export(int argc, char **argv) {
    Args a = {argc, argv, 1, "export"};
    const char *model = NULL, *adapter = NULL, *out = NULL, *format = NULL, *type = "f16";
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("%s", k_help);
            return 0;
        }
        if (arg_value(&a, "--model", &model) || arg_value(&a, "--adapter", &adapter) || arg_value(&a, "--out", &out) ||
            arg_value(&a, "--format", &format) || arg_value(&a, "--type", &type))
            continue;
        arg_unknown(&a);
    }
    if (!model || !out) die("export needs --model and --out (see --help)");
    if (!format) format = ld_is_dir(model) ? "hf" : "gguf";
    if (strcmp(format, "hf") && strcmp(format, "gguf")) die("--format must be hf or gguf, not '%s'", format);
    LdDtype t;
    if (!strcasecmp(type, "f16"))
        t = LD_F16;
    else if (!strcasecmp(type, "bf16"))
        t = LD_BF16;
    else if (!strcasecmp(type, "q8_0"))
        t = LD_Q8_0;
    else if (!strcasecmp(type, "f32"))
        t = LD_F32;
    else
        die("--type must be f16, bf16, q8_0 or f32, not '%s'", type);
    Model *m = load_model_or_die(model);
    Lora *l = NULL;
    if (adapter && !(l = lora_load_peft(&m->cfg, adapter))) die("%s", ld_last_error());
    int total, merged;
    double t0 = ld_time_s();
    int rc = !strcmp(format, "hf") ? export_hf(m, l, out, &total, &merged) : export_gguf(m, l, t, out, &total, &merged);
    if (rc) die("%s", ld_last_error());
    fprintf(stderr, "export: %d tensors (%d merged with the adapter) -> %s%s in %.1fs\n", total, merged, out,
            !strcmp(format, "hf") ? "/model.safetensors" : "", ld_time_s() - t0);
    lora_free(l);
    model_free(m);
    return 0;
}
