// Logits parity with HF transformers (fp32) on tiny random models of every architecture
// (fixtures: tools/make_model_fixtures.py); HF directory vs GGUF of the same weights; prefill vs
// incremental decode vs a mixed batch through the KV cache.
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "forward.h"
#include "test_util.h"
#include "util.h"

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

typedef struct {
    int *tokens, T, V;
    float *logits;  // [T, V]
} Reference;

static Reference read_reference(const char *dir) {
    char p[1100];
    snprintf(p, sizeof p, "%s/reference.json", dir);
    char *txt = test_read(p);
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    Reference r = {0};
    cJSON *toks = cJSON_GetObjectItem(root, "tokens"), *lg = cJSON_GetObjectItem(root, "logits");
    r.T = cJSON_GetArraySize(toks);
    r.V = cJSON_GetArraySize(lg->child);
    r.tokens = ld_xmalloc(sizeof(int) * r.T);
    r.logits = ld_xmalloc(sizeof(float) * r.T * r.V);
    int i = 0;
    for (cJSON *x = toks->child; x; x = x->next) r.tokens[i++] = x->valueint;
    i = 0;
    for (cJSON *row = lg->child; row; row = row->next)
        for (cJSON *x = row->child; x; x = x->next) r.logits[i++] = (float)x->valuedouble;
    cJSON_Delete(root);
    return r;
}

// Prefill of all tokens in one call.
static float *run_prefill(const Model *m, const int *tokens, int T) {
    KVCache *kv = kv_new(&m->cfg, 1, T);
    int *slot = ld_xcalloc(T, sizeof(int)), *pos = ld_xmalloc(sizeof(int) * T);
    for (int i = 0; i < T; i++) pos[i] = i;
    float *out = ld_xmalloc(sizeof(float) * T * m->cfg.vocab);
    CHECK(model_forward(m, kv, tokens, slot, pos, T, NULL, out) == 0, "forward failed: %s", ld_last_error());
    free(slot);
    free(pos);
    kv_free(kv);
    return out;
}

static void check_model(const char *name, const char *gguf_name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tiny/%s", LD_FIXTURES, name);
    Reference ref = read_reference(dir);
    Model *m = model_load(dir);
    CHECK(m != NULL, "%s: load failed: %s", name, ld_last_error());
    if (!m) return;
    int T = ref.T, V = m->cfg.vocab;
    CHECK(V == ref.V, "%s: vocab %d vs %d", name, V, ref.V);
    float *out = run_prefill(m, ref.tokens, T);
    double e = rel_err(out, ref.logits, (size_t)T * V);
    printf("%-20s arch %-6s prefill rel err vs HF %.2e\n", name, arch_name(m->cfg.arch), e);
    CHECK(e < 1e-4, "%s: logits differ from HF transformers: rel err %.3e", name, e);

    // Two sequences in one cache: A decodes token by token while B is prefilled in the same calls.
    KVCache *kv = kv_new(&m->cfg, 2, T);
    float *step = ld_xmalloc(sizeof(float) * 2 * V);
    int half = T / 2;
    double worst = 0;
    for (int t = 0; t < T; t++) {
        int toks[2] = {ref.tokens[t], ref.tokens[t]}, slots[2] = {0, 1}, pos[2] = {t, t};
        int n = t < half ? 1 : 2;  // B joins halfway: its positions < half come in one later batch
        if (t == half) {
            int *pt = ld_xmalloc(sizeof(int) * (half + 1)), *ps = ld_xmalloc(sizeof(int) * (half + 1)),
                *pp = ld_xmalloc(sizeof(int) * (half + 1));
            for (int i = 0; i <= half; i++) pt[i] = ref.tokens[i], ps[i] = 1, pp[i] = i;
            uint8_t *want = ld_xcalloc(half + 1, 1);
            want[half] = 1;
            CHECK(model_forward(m, kv, pt, ps, pp, half + 1, want, step + V) == 0, "prefill B");
            CHECK(model_forward(m, kv, toks, slots, pos, 1, NULL, step) == 0, "decode A");
            free(pt), free(ps), free(pp), free(want);
        } else {
            CHECK(model_forward(m, kv, toks, slots, pos, n, NULL, step) == 0, "decode step");
        }
        double ea = rel_err(step, ref.logits + (size_t)t * V, V);
        if (ea > worst) worst = ea;
        if (t >= half) {
            double eb = rel_err(step + V, ref.logits + (size_t)t * V, V);
            if (eb > worst) worst = eb;
        }
    }
    printf("%-20s incremental + batched decode rel err %.2e\n", name, worst);
    CHECK(worst < 1e-4, "%s: incremental/batched decode differs: %.3e", name, worst);
    free(step);
    kv_free(kv);

    if (gguf_name) {
        char gp[1024];
        snprintf(gp, sizeof gp, "%s/tiny/%s", LD_FIXTURES, gguf_name);
        Model *g = model_load(gp);
        CHECK(g != NULL, "%s: load failed: %s", gguf_name, ld_last_error());
        if (g) {
            float *og = run_prefill(g, ref.tokens, T);
            double eg = rel_err(og, out, (size_t)T * V);
            printf("%-20s GGUF vs HF directory rel err %.2e\n", gguf_name, eg);
            CHECK(eg < 1e-5, "%s: GGUF logits differ from the HF directory's: %.3e", gguf_name, eg);
            int *a, *b;
            int na = tok_encode(m->tok, "hello world 2024", 16, 0, &a), nb = tok_encode(g->tok, "hello world 2024", 16, 0, &b);
            CHECK(na == nb && !memcmp(a, b, sizeof(int) * na), "%s: GGUF tokenizer differs from tokenizer.json", gguf_name);
            free(a), free(b), free(og);
            model_free(g);
        }
    }
    free(out);
    free(ref.tokens);
    free(ref.logits);
    model_free(m);
}

int main(void) {
    check_model("llama", "llama.gguf");
    check_model("llama3_rope", NULL);
    check_model("llama_sharded_bf16", NULL);
    check_model("qwen2", NULL);
    check_model("gemma", NULL);
    check_model("gemma2", NULL);
    check_model("gemma3", "gemma3.gguf");
    check_model("llama_gelu", NULL);  // hidden_act "gelu": exact GELU
    check_model("gemma_gelu", NULL);  // hidden_act "gelu" on Gemma: transformers reads the tanh approximation
    return test_finish("test_logits");
}
