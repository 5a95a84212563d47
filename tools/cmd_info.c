// llamaduo info: the compute devices found and, given --model, what the engine understood of a model.
#include <string.h>

#include "chat.h"
#include "cli.h"
#include "cuda_device.h"
#include "dist.h"
#include "util.h"

int cmd_info(int argc, char **argv) {
    Args a = {argc, argv, 1, "info"};
    const char *model = NULL;
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("usage: llamaduo info [--model PATH]\n");
            return 0;
        }
        if (arg_value(&a, "--model", &model)) continue;
        arg_unknown(&a);
    }
    int nd = ld_cuda_device_count();
    printf("devices: cpu");
    for (int i = 0; i < nd; i++) {
        char d[256];
        if (!ld_cuda_device_describe(i, d, sizeof d)) printf(", cuda:%d (%s)", i, d);
    }
    printf("\ndata-parallel ranks meet over: %s\n", dist_built_with());
    if (!model) return 0;
    Model *m = load_model_or_die(model);
    const ModelConfig *c = &m->cfg;
    int local = 0;
    for (int i = 0; i < c->n_layers; i++) local += c->layer_local[i];
    printf(
        "architecture: %s\nlayers: %d (%d sliding-window, window %d)\ndim: %d, ffn: %d, heads: %d q / %d kv, head_dim %d\n"
        "vocab: %d, context: %d, tied embeddings: %s\nrope theta: %g (local %g)\nsoft-caps: attention %g, final %g\n",
        arch_name(c->arch), c->n_layers, local, c->sliding_window, c->dim, c->ffn_dim, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab,
        c->max_pos, c->tied_embeddings ? "yes" : "no", c->rope_global.theta, c->rope_local.theta, c->attn_softcap, c->final_softcap);
    ChatTemplate ct;
    if (chat_template_init(&ct, m->chat_template, NULL) == 0) {
        printf("chat template: %s\n", chat_family_name(ct.family));
        chat_template_free(&ct);
    } else {
        printf("chat template: none recognised (%s)\n", ld_last_error());
    }
    model_free(m);
    return 0;
}
