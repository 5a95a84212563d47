// llamaduo perplexity: mean negative log-likelihood and perplexity over a text file, in fixed windows.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "forward.h"
#include "kernels.h"
#include "util.h"

int cmd_perplexity(int argc, char **argv) {
    Args a = {argc, argv, 1, "perplexity"};
    const char *model = NULL, *file = NULL, *adapter = NULL;
    int ctx = 512, threads = 0, per_token = 0;
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf(
                "usage: llamaduo perplexity --model PATH --file TEXT [--adapter DIR] [--ctx N] [--threads N] [--per-token]\n\n"
                "Splits the tokenised file into windows of N tokens (default 512; each starts with BOS when the\n"
                "tokenizer adds one) and scores every token after the first of each window. Prints one JSON\n"
                "line: {\"tokens\", \"windows\", \"nll\", \"ppl\"}; --per-token first prints one line per position\n"
                "{\"window\", \"pos\", \"token\", \"argmax\", \"nll\"} (the model's top prediction for the next token),\n"
                "for comparing engines teacher-forced on the same ids.\n");
            return 0;
        }
        if (arg_flag(&a, "--per-token")) {
            per_token = 1;
            continue;
        }
        if (arg_value(&a, "--model", &model) || arg_value(&a, "--file", &file) || arg_value(&a, "--adapter", &adapter) ||
            arg_int(&a, "--ctx", &ctx, 2, 1 << 20) || arg_int(&a, "--threads", &threads, 1, 1024))
            continue;
        arg_unknown(&a);
    }
    if (!file) die("--file TEXT is required");
    set_threads(threads);
    size_t len;
    char *text = ld_read_file(file, &len);
    if (!text) die("%s", ld_last_error());
    Model *m = load_model_or_die(model);
    if (adapter) attach_adapter_or_die(m, adapter);
    if (ctx > m->cfg.max_pos) ctx = m->cfg.max_pos;
    int *ids, n = tok_encode(m->tok, text, len, 0, &ids);
    int bos = -1;
    {
        int *probe, k = tok_encode(m->tok, "", 0, TOK_ADD_SPECIAL, &probe);
        if (k > 0) bos = probe[0];
        free(probe);
    }
    int body = ctx - (bos >= 0);
    int windows = n / body;
    if (windows == 0) die("%s: %d tokens is shorter than one window of %d", file, n, ctx);
    KVCache *kv = kv_new(&m->cfg, 1, ctx);
    if (!kv) die("%s", ld_last_error());
    int V = m->cfg.vocab;
    float *logits = ld_xmalloc(sizeof(float) * (size_t)ctx * V);
    int *win = ld_xmalloc(sizeof(int) * ctx), *slot = ld_xcalloc((size_t)ctx, sizeof(int)), *pos = ld_xmalloc(sizeof(int) * ctx);
    for (int i = 0; i < ctx; i++) pos[i] = i;
    double nll = 0, t0 = ld_time_s();
    long scored = 0;
    for (int w = 0; w < windows; w++) {
        int k = 0;
        if (bos >= 0) win[k++] = bos;
        memcpy(win + k, ids + (size_t)w * body, sizeof(int) * body);
        if (model_forward(m, kv, win, slot, pos, ctx, NULL, logits)) die("%s", ld_last_error());
        for (int i = 0; i + 1 < ctx; i++) {
            const float *row = logits + (size_t)i * V;
            double tok_nll = k_logsumexp(row, V) - row[win[i + 1]];
            nll += tok_nll;
            scored++;
            if (per_token) {
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (row[v] > row[best]) best = v;
                printf("{\"window\": %d, \"pos\": %d, \"token\": %d, \"argmax\": %d, \"nll\": %.6f}\n", w, i, win[i], best, tok_nll);
            }
        }
        double dt = ld_time_s() - t0;
        fprintf(stderr,
                isatty(2) ? "\rperplexity: window %d/%d, ppl so far %.4f, %.0f tok/s   "
                          : "perplexity: window %d/%d, ppl so far %.4f, %.0f tok/s\n",
                w + 1, windows, exp(nll / scored), (w + 1) * ctx / dt);
    }
    if (isatty(2)) fprintf(stderr, "\n");
    printf("{\"tokens\": %ld, \"windows\": %d, \"nll\": %.6f, \"ppl\": %.6f}\n", scored, windows, nll / scored, exp(nll / scored));
    free(logits), free(win), free(slot), free(pos), free(ids), free(text);
    kv_free(kv);
    model_free(m);
    return 0;
}
