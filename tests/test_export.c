// Exports: a GGUF base with a LoRA adapter merged in, written as GGUF F32/F16/BF16/Q8_0, reads back with the
// adapter-applied model's logits (F32 exactly up to rounding, the others within their precision) and the base's
// tokenizer and chat template; Q/K interleaving (llama) and Gemma's 1 + w norms survive the round trip. The
// llama.cpp side is checked by tools/check_export.py.
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "export.h"
#include "forward.h"
#include "test_util.h"
#include "util.h"

static uint64_t g_rng = 88172645463325252ull;
static float frand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0) * 2 - 1;
}

static float *logits_of(const Model *m, const int *tokens, int T) {
    KVCache *kv = kv_new(&m->cfg, 1, T);
    int *slot = ld_xcalloc((size_t)T, sizeof(int)), *pos = ld_xmalloc(sizeof(int) * (size_t)T);
    for (int i = 0; i < T; i++) pos[i] = i;
    float *lg = ld_xmalloc(sizeof(float) * (size_t)T * m->cfg.vocab);
    CHECK(model_forward(m, kv, tokens, slot, pos, T, NULL, lg) == 0, "forward: %s", ld_last_error());
    kv_free(kv), free(slot), free(pos);
    return lg;
}

static double rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static void check_gguf(const char *name) {
    char base[1024], out[256];
    snprintf(base, sizeof base, "%s/tiny/%s.gguf", LD_FIXTURES, name);
    Model *m = model_load(base);
    CHECK(m != NULL, "%s: %s", base, ld_last_error());
    if (!m) return;
    Lora *l = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1);
    for (int i = 0; i < l->n_layers * LT_COUNT; i++) {
        LoraPair *p = &l->w[i];
        for (size_t k = 0; k < (size_t)4 * p->in; k++) p->A[k] = 0.2f * frand();
        for (size_t k = 0; k < (size_t)4 * p->out; k++) p->B[k] = 0.2f * frand();
    }
    int tokens[12], T = 12;
    for (int i = 0; i < T; i++) tokens[i] = 3 + (i * 37) % (m->cfg.vocab - 3);
    m->adapter = l;
    float *want = logits_of(m, tokens, T);
    m->adapter = NULL;
    float *plain = logits_of(m, tokens, T);
    double moved = rel(plain, want, (size_t)T * m->cfg.vocab);
    CHECK(moved > 1e-2, "%s: the test adapter barely changes the logits (%.2e)", name, moved);
    struct {
        LdDtype type;
        double bound;
    } kinds[] = {{LD_F32, 1e-5}, {LD_F16, 2e-3}, {LD_BF16, 2e-2}, {LD_Q8_0, 5e-2}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        snprintf(out, sizeof out, "/tmp/llamaduo-export-%d-%s-%s.gguf", (int)getpid(), name, ld_dtype_name(kinds[k].type));
        int nt, nm;
        CHECK(export_gguf(m, l, kinds[k].type, out, &nt, &nm) == 0, "%s: export: %s", name, ld_last_error());
        CHECK(nm == m->cfg.n_layers * LT_COUNT, "%s: %d of %d linears merged", name, nm, m->cfg.n_layers * LT_COUNT);
        Model *e = model_load(out);
        CHECK(e != NULL, "%s: the %s export does not load: %s", name, ld_dtype_name(kinds[k].type), ld_last_error());
        if (e) {
            float *got = logits_of(e, tokens, T);
            double err = rel(got, want, (size_t)T * m->cfg.vocab);
            printf("%-7s GGUF %-4s export: logits vs the base with the adapter applied, rel err %.2e (bound %.0e)\n", name,
                   ld_dtype_name(kinds[k].type), err, kinds[k].bound);
            CHECK(err < kinds[k].bound, "%s %s: export logits differ: %.3e", name, ld_dtype_name(kinds[k].type), err);
            CHECK(tok_vocab_size(e->tok) == tok_vocab_size(m->tok), "%s: tokenizer not carried over", name);
            CHECK((!e->chat_template && !m->chat_template) ||
                      (e->chat_template && m->chat_template && !strcmp(e->chat_template, m->chat_template)),
                  "%s: chat template not carried over", name);
            CHECK(e->cfg.n_layers == m->cfg.n_layers && e->cfg.rope_global.theta == m->cfg.rope_global.theta &&
                      e->cfg.sliding_window == m->cfg.sliding_window,
                  "%s: hyperparameters not carried over", name);
            free(got);
            model_free(e);
        }
        unlink(out);
    }
    // refusals name the problem: an HF directory cannot be made from a GGUF base
    int nt, nm;
    CHECK(export_hf(m, l, "/tmp/llamaduo-export-nope", &nt, &nm) != 0 && strstr(ld_last_error(), "HF base"), "GGUF base to HF: %s",
          ld_last_error());
    lora_free(l);
    free(want), free(plain);
    model_free(m);
}

// A fully fine-tuned model's weights (trainable fp32 copies, changed in place) go out as they are.
static void check_full_model_export(void) {
    char base[1024], out[256];
    snprintf(base, sizeof base, "%s/tiny/llama", LD_FIXTURES);
    Model *m = model_load(base);
    if (!m) {
        CHECK(0, "%s", ld_last_error());
        return;
    }
    model_make_trainable(m);
    float *wq = (float *)m->layers[1].wq.data;
    for (int i = 0; i < 64; i++) wq[i] += 0.5f * frand();
    m->final_norm[3] += 0.25f;
    int tokens[9] = {5, 17, 33, 2, 90, 41, 7, 250, 11}, nt, nm;
    float *want = logits_of(m, tokens, 9);
    snprintf(out, sizeof out, "/tmp/llamaduo-export-full-%d", (int)getpid());
    CHECK(export_hf(m, NULL, out, &nt, &nm) == 0 && nm == 0, "full export: %s", ld_last_error());
    Model *e = model_load(out);
    CHECK(e != NULL, "full export does not load: %s", ld_last_error());
    if (e) {
        float *got = logits_of(e, tokens, 9);
        double err = rel(got, want, (size_t)9 * m->cfg.vocab);
        printf("full fine-tuned HF export: logits rel err %.2e\n", err);
        CHECK(err < 1e-6, "full export logits differ: %.3e", err);
        free(got);
        model_free(e);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    CHECK(system(cmd) == 0, "cleanup");
    CHECK(export_gguf(m, NULL, LD_F16, "/tmp/llamaduo-export-nope.gguf", &nt, &nm) != 0 && strstr(ld_last_error(), "GGUF base"),
          "HF base to GGUF: %s", ld_last_error());
    free(want);
    model_free(m);
}

int main(void) {
    check_gguf("llama");
    check_gguf("gemma3");
    check_full_model_export();
    return test_finish("test_export");
}
