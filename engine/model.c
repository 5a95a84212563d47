#include "model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "lora.h"
#include "safetensors.h"
#include "util.h"

const char *arch_name(Arch a) {
    static const char *n[] = {"llama", "qwen2", "gemma", "gemma2", "gemma3"};
    return n[a];
}

// The files a model's tensors live in; kept mapped for the model's lifetime.
typedef struct {
    SafeTensors *st;
    int n_st;
    Gguf *gguf;
} ModelFiles;

static void *own(Model *m, void *p) {
    if (m->n_blocks == m->cap_blocks)
        m->blocks = ld_xrealloc(m->blocks, sizeof(void *) * (size_t)(m->cap_blocks = m->cap_blocks ? m->cap_blocks * 2 : 64));
    m->blocks[m->n_blocks++] = p;
    return p;
}

void model_free(Model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_blocks; i++) free(m->blocks[i]);
    free(m->blocks);
    ModelFiles *f = m->files;
    if (f) {
        for (int i = 0; i < f->n_st; i++) st_close(&f->st[i]);
        free(f->st);
        if (f->gguf) gguf_close(f->gguf);
        free(f->gguf);
        free(f);
    }
    free(m->layers);
    lora_free(m->adapter);
    model_config_free(&m->cfg);
    tok_free(m->tok);
    free(m->chat_template);
    free(m->path);
    free(m);
}

const struct Gguf *model_gguf(const Model *m) {
    const ModelFiles *f = m->files;
    return f ? f->gguf : NULL;
}

void model_config_free(ModelConfig *c) {
    free(c->layer_local);
    c->layer_local = NULL;
}

// ---- config.json ---------------------------------------------------------------------------------------

static int cfg_int(const cJSON *c, const char *k, int def, int *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k);
    if (!v || cJSON_IsNull(v)) {
        if (def == INT32_MIN) {
            ld_set_error("%s: missing '%s'", path, k);
            return -1;
        }
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9 || v->valuedouble != (int)v->valuedouble) {
        ld_set_error("%s: '%s' must be a non-negative integer", path, k);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

static int cfg_float(const cJSON *c, const char *k, double def, double *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) {
        ld_set_error("%s: '%s' must be a number", path, k);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

static int parse_rope(const cJSON *r, double default_theta, RopeParams *out, const char *path) {
    out->theta = default_theta;
    out->scaling = ROPE_DEFAULT;
    out->factor = 1;
    if (!r || cJSON_IsNull(r)) return 0;
    if (!cJSON_IsObject(r)) {
        ld_set_error("%s: rope parameters must be an object", path);
        return -1;
    }
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(r, "rope_type");
    if (!ty) ty = cJSON_GetObjectItemCaseSensitive(r, "type");
    const char *t = cJSON_IsString(ty) ? ty->valuestring : "default";
    if (cfg_float(r, "rope_theta", default_theta, &out->theta, path)) return -1;
    if (!strcmp(t, "default")) return 0;
    if (cfg_float(r, "factor", 1.0, &out->factor, path)) return -1;
    if (!strcmp(t, "linear")) {
        out->scaling = ROPE_LINEAR;
        return 0;
    }
    if (!strcmp(t, "llama3")) {
        out->scaling = ROPE_LLAMA3;
        if (cfg_float(r, "low_freq_factor", 1.0, &out->low_freq_factor, path) ||
            cfg_float(r, "high_freq_factor", 4.0, &out->high_freq_factor, path) ||
            cfg_int(r, "original_max_position_embeddings", 8192, &out->original_max_pos, path))
            return -1;
        if (out->high_freq_factor <= out->low_freq_factor) {
            ld_set_error("%s: llama3 rope scaling needs high_freq_factor > low_freq_factor", path);
            return -1;
        }
        return 0;
    }
    ld_set_error("%s: unsupported rope scaling type '%s' (default, linear and llama3 are supported)", path, t);
    return -1;
}

static int arch_from_hf(const char *mt, Arch *a) {
    static const struct {
        const char *name;
        Arch arch;
    } map[] = {{"llama", ARCH_LLAMA},   {"mistral", ARCH_LLAMA},      {"qwen2", ARCH_QWEN2},  {"gemma", ARCH_GEMMA},
               {"gemma2", ARCH_GEMMA2}, {"gemma3_text", ARCH_GEMMA3}, {"gemma3", ARCH_GEMMA3}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(mt, map[i].name)) {
            *a = map[i].arch;
            return 0;
        }
    return -1;
}

// Family defaults that every loader shares, once arch and the sizes are known.
static void arch_defaults(ModelConfig *c) {
    int gemma = c->arch == ARCH_GEMMA || c->arch == ARCH_GEMMA2 || c->arch == ARCH_GEMMA3;
    c->norm_plus_one = gemma;
    c->embed_scale = gemma;
    c->sandwich_norms = c->arch == ARCH_GEMMA2 || c->arch == ARCH_GEMMA3;
    c->qk_norm = c->arch == ARCH_GEMMA3;
    if (c->arch == ARCH_QWEN2) c->qkv_bias = 1;
    c->act = gemma ? ACT_GELU_TANH : ACT_SILU;
    c->attn_scale = 1.0f / sqrtf((float)c->head_dim);
    c->layer_local = ld_xcalloc((size_t)c->n_layers + 1, 1);
    for (int i = 0; i < c->n_layers; i++) {
        if (c->arch == ARCH_GEMMA2) c->layer_local[i] = (i % 2) == 0;
        if (c->arch == ARCH_GEMMA3) c->layer_local[i] = ((i + 1) % 6) != 0;
    }
}

static int check_sizes(ModelConfig *c, const char *path) {
    if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 || c->ffn_dim <= 0 || c->vocab <= 0) {
        ld_set_error("%s: model sizes must be positive", path);
        return -1;
    }
    // Bounds far above any real checkpoint: a corrupt file must not make us allocate gigabytes of nothing.
    if (c->dim > 65536 || c->n_layers > 1024 || c->n_heads > 1024 || c->ffn_dim > 1 << 20 || c->vocab > 1 << 23 || c->max_pos > 1 << 24) {
        ld_set_error("%s: implausible model sizes (dim %d, layers %d, heads %d, ffn %d, vocab %d, context %d)", path, c->dim, c->n_layers,
                     c->n_heads, c->ffn_dim, c->vocab, c->max_pos);
        return -1;
    }
    if (c->n_heads % c->n_kv_heads) {
        ld_set_error("%s: %d attention heads is not a multiple of %d key/value heads", path, c->n_heads, c->n_kv_heads);
        return -1;
    }
    if (c->head_dim % 2 || c->head_dim > 1024) {
        ld_set_error("%s: head_dim %d must be even and at most 1024", path, c->head_dim);
        return -1;
    }
    return 0;
}

static int parse_hf_config(const char *path, ModelConfig *c) {
    size_t len;
    char *txt = ld_read_file(path, &len);
    if (!txt) return -1;
    int rc = model_config_from_hf_json(txt, len, path, c);
    free(txt);
    return rc;
}

int model_config_from_hf_json(const char *json, size_t len, const char *path, ModelConfig *c) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_ParseWithLength(json, len);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        ld_set_error("%s: not a JSON object", path);
        goto done;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        ld_set_error("%s: missing 'model_type'", path);
        goto done;
    }
    if (arch_from_hf(mt->valuestring, &c->arch)) {
        ld_set_error("%s: unsupported architecture '%s' (llama, mistral, qwen2, gemma, gemma2, gemma3 are supported)", path,
                     mt->valuestring);
        goto done;
    }
    const cJSON *cfg = root;
    const cJSON *text_cfg = cJSON_GetObjectItemCaseSensitive(root, "text_config");  // multimodal Gemma 3
    if (!strcmp(mt->valuestring, "gemma3") && cJSON_IsObject(text_cfg)) cfg = text_cfg;
    if (cfg_int(cfg, "hidden_size", INT32_MIN, &c->dim, path) || cfg_int(cfg, "num_hidden_layers", INT32_MIN, &c->n_layers, path) ||
        cfg_int(cfg, "num_attention_heads", INT32_MIN, &c->n_heads, path) ||
        cfg_int(cfg, "num_key_value_heads", c->n_heads, &c->n_kv_heads, path) ||
        cfg_int(cfg, "intermediate_size", INT32_MIN, &c->ffn_dim, path) || cfg_int(cfg, "vocab_size", INT32_MIN, &c->vocab, path) ||
        cfg_int(cfg, "max_position_embeddings", 8192, &c->max_pos, path))
        goto done;
    if (c->n_heads <= 0) {
        ld_set_error("%s: num_attention_heads must be positive", path);
        goto done;
    }
    if (cfg_int(cfg, "head_dim", c->dim / c->n_heads, &c->head_dim, path)) goto done;
    if (check_sizes(c, path)) goto done;
    arch_defaults(c);
    double eps, v;
    if (cfg_float(cfg, "rms_norm_eps", 1e-6, &eps, path)) goto done;
    c->norm_eps = (float)eps;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings");
    if (!tie) tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
    c->tied_embeddings = tie ? cJSON_IsTrue(tie) : (c->arch >= ARCH_GEMMA);
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "attention_bias");
    if (c->arch == ARCH_LLAMA && cJSON_IsTrue(ab)) c->qkv_bias = c->o_bias = 1;
    // transformers' rules: Gemma 2 and 3 read hidden_activation (tanh GELU when absent); Gemma reads hidden_act,
    // where "gelu" (what Gemma's releases wrote) means the tanh approximation; the others read hidden_act
    int gemma_v1 = c->arch == ARCH_GEMMA;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, c->arch > ARCH_GEMMA ? "hidden_activation" : "hidden_act");
    if (cJSON_IsString(act)) {
        const char *a = gemma_v1 && !strcmp(act->valuestring, "gelu") ? "gelu_pytorch_tanh" : act->valuestring;
        if (!strcmp(a, "silu") || !strcmp(a, "swish"))
            c->act = ACT_SILU;
        else if (!strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_new") || !strcmp(a, "gelu_fast"))
            c->act = ACT_GELU_TANH;
        else if (!strcmp(a, "gelu"))
            c->act = ACT_GELU_ERF;
        else {
            ld_set_error("%s: unsupported activation '%s'", path, a);
            goto done;
        }
    }
    if (cfg_float(cfg, "query_pre_attn_scalar", 0, &v, path)) goto done;
    if (v > 0 && (c->arch == ARCH_GEMMA2 || c->arch == ARCH_GEMMA3)) c->attn_scale = (float)(1.0 / sqrt(v));
    if (cfg_float(cfg, "attn_logit_softcapping", 0, &v, path)) goto done;
    c->attn_softcap = (float)v;
    if (cfg_float(cfg, "final_logit_softcapping", 0, &v, path)) goto done;
    c->final_softcap = (float)v;
    // sliding window: Gemma 2/3 always; Mistral/Qwen2 only when the config turns it on
    const cJSON *usw = cJSON_GetObjectItemCaseSensitive(cfg, "use_sliding_window");
    int sw_on = c->arch == ARCH_GEMMA2 || c->arch == ARCH_GEMMA3 || (c->arch == ARCH_LLAMA && !usw) || cJSON_IsTrue(usw);
    if (sw_on && cfg_int(cfg, "sliding_window", 0, &c->sliding_window, path)) goto done;
    if (c->arch == ARCH_LLAMA && c->sliding_window)
        for (int i = 0; i < c->n_layers; i++) c->layer_local[i] = 1;  // Mistral: every layer windowed
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(cfg, "layer_types");
    if (cJSON_IsArray(lt)) {
        if (cJSON_GetArraySize(lt) != c->n_layers) {
            ld_set_error("%s: layer_types has %d entries for %d layers", path, cJSON_GetArraySize(lt), c->n_layers);
            goto done;
        }
        int i = 0;
        for (const cJSON *x = lt->child; x; x = x->next, i++)
            c->layer_local[i] = cJSON_IsString(x) && !strcmp(x->valuestring, "sliding_attention");
    } else {
        int pat;
        if (cfg_int(cfg, "sliding_window_pattern", 0, &pat, path)) goto done;
        if (pat > 0 && c->arch == ARCH_GEMMA3)
            for (int i = 0; i < c->n_layers; i++) c->layer_local[i] = ((i + 1) % pat) != 0;
    }
    if (!c->sliding_window)
        for (int i = 0; i < c->n_layers; i++) c->layer_local[i] = 0;
    // rope: transformers 5 writes rope_parameters (flat, or keyed by layer type); older files rope_theta +
    // rope_scaling (+ rope_local_base_freq for Gemma 3).
    double theta;
    if (cfg_float(cfg, "rope_theta", c->arch == ARCH_GEMMA3 ? 1e6 : 1e4, &theta, path)) goto done;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
    const cJSON *rp_full = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
    const cJSON *rp_slide = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
    double local_theta;
    if (cfg_float(cfg, "rope_local_base_freq", c->arch == ARCH_GEMMA3 ? 1e4 : theta, &local_theta, path)) goto done;
    if (rp_full || rp_slide) {
        if (parse_rope(rp_full, theta, &c->rope_global, path) || parse_rope(rp_slide, local_theta, &c->rope_local, path)) goto done;
    } else if (rp) {
        if (parse_rope(rp, theta, &c->rope_global, path)) goto done;
        c->rope_local = c->rope_global;
        if (c->arch == ARCH_GEMMA3) parse_rope(NULL, local_theta, &c->rope_local, path);
    } else {
        if (parse_rope(cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling"), theta, &c->rope_global, path)) goto done;
        if (c->arch == ARCH_GEMMA3)
            parse_rope(NULL, local_theta, &c->rope_local, path);  // local layers: default rope, own base
        else
            c->rope_local = c->rope_global;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

// ---- GGUF metadata -------------------------------------------------------------------------------------

int model_config_from_gguf(const Gguf *g, ModelConfig *c) {
    memset(c, 0, sizeof *c);
    const char *path = g->path;
    char *an = gguf_get_str(g, "general.architecture");
    if (!an) {
        ld_set_error("%s: GGUF has no general.architecture", path);
        return -1;
    }
    if (arch_from_hf(an, &c->arch) || !strcmp(an, "mistral")) {
        ld_set_error("%s: unsupported architecture '%s' (llama, qwen2, gemma, gemma2, gemma3 are supported)", path, an);
        free(an);
        return -1;
    }
    char key[128];
#define K(s) (snprintf(key, sizeof key, "%s.%s", an, s), key)
    c->dim = (int)gguf_get_int(g, K("embedding_length"), 0);
    c->n_layers = (int)gguf_get_int(g, K("block_count"), 0);
    c->n_heads = (int)gguf_get_int(g, K("attention.head_count"), 0);
    c->n_kv_heads = (int)gguf_get_int(g, K("attention.head_count_kv"), c->n_heads);
    c->ffn_dim = (int)gguf_get_int(g, K("feed_forward_length"), 0);
    c->max_pos = (int)gguf_get_int(g, K("context_length"), 8192);
    c->head_dim = (int)gguf_get_int(g, K("attention.key_length"), c->n_heads > 0 ? c->dim / c->n_heads : 0);
    const GgufKv *toks = gguf_get(g, "tokenizer.ggml.tokens");
    c->vocab = (int)gguf_get_int(g, K("vocab_size"), toks ? (int64_t)toks->arr_len : 0);
    const TensorRef *emb = gguf_find(g, "token_embd.weight");
    if (emb && emb->n_dims == 2) c->vocab = (int)emb->shape[0];
    if (check_sizes(c, path)) {
        free(an);
        return -1;
    }
    arch_defaults(c);
    c->norm_eps = (float)gguf_get_float(g, K("attention.layer_norm_rms_epsilon"), 1e-6);
    c->tied_embeddings = gguf_find(g, "output.weight") == NULL;
    c->attn_softcap = (float)gguf_get_float(g, K("attn_logit_softcapping"), 0);
    c->final_softcap = (float)gguf_get_float(g, K("final_logit_softcapping"), 0);
    c->sliding_window = (int)gguf_get_int(g, K("attention.sliding_window"), 0);
    if (c->arch == ARCH_LLAMA || c->arch == ARCH_QWEN2) c->sliding_window = 0;
    const GgufKv *pat = gguf_get(g, K("attention.sliding_window_pattern"));  // per-layer bools, when written
    if (pat && pat->type == GGUF_ARRAY && pat->arr_type != GGUF_STRING && pat->arr_len == (uint64_t)c->n_layers)
        for (int i = 0; i < c->n_layers; i++) c->layer_local[i] = gguf_arr_num(pat, (uint64_t)i) != 0;
    if (!c->sliding_window) memset(c->layer_local, 0, (size_t)c->n_layers);
    double qpas = gguf_get_float(g, K("attention.query_pre_attn_scalar"), 0);  // absent in most files
    if (qpas > 0) c->attn_scale = (float)(1.0 / sqrt(qpas));
    double theta = gguf_get_float(g, K("rope.freq_base"), c->arch == ARCH_GEMMA3 ? 1e6 : 1e4);
    parse_rope(NULL, theta, &c->rope_global, path);
    char *st = gguf_get_str(g, K("rope.scaling.type"));
    if (st && !strcmp(st, "linear")) {
        c->rope_global.scaling = ROPE_LINEAR;
        c->rope_global.factor = gguf_get_float(g, K("rope.scaling.factor"), 1.0);
    }
    free(st);
    c->rope_local = c->rope_global;
    if (c->arch == ARCH_GEMMA3) parse_rope(NULL, 1e4, &c->rope_local, path);  // llama.cpp's fixed local base
#undef K
    free(an);
    return 0;
}

// ---- weights -------------------------------------------------------------------------------------------

typedef struct {
    Model *m;
    ModelFiles *files;
    const char *path;
    int from_gguf;
    const char *prefix;  // HF name prefix ("model." or "language_model.model.")
} Loader;

static const TensorRef *find_tensor(Loader *L, const char *name) {
    if (L->from_gguf) return gguf_find(L->files->gguf, name);
    for (int i = 0; i < L->files->n_st; i++) {
        const TensorRef *t = st_find(&L->files->st[i], name);
        if (t) return t;
    }
    return NULL;
}

// Finds tensor `name` and checks its shape ([rows, cols], or [cols] when rows is 0) and type. NULL when absent
// and optional; an error otherwise.
static const TensorRef *find_checked(Loader *L, const char *name, int64_t rows, int64_t cols, int optional, int *err) {
    if (*err) return NULL;
    const TensorRef *t = find_tensor(L, name);
    if (!t) {
        if (!optional) {
            ld_set_error("%s: missing tensor '%s'", L->path, name);
            *err = 1;
        }
        return NULL;
    }
    int ok = rows ? (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols) : (t->n_dims == 1 && t->shape[0] == cols);
    if (!ok) {
        char got[96] = "";
        for (int i = 0; i < t->n_dims; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (rows)
            ld_set_error("%s: tensor '%s' has shape [%s], expected [%lld, %lld]", L->path, name, got, (long long)rows, (long long)cols);
        else
            ld_set_error("%s: tensor '%s' has shape [%s], expected [%lld]", L->path, name, got, (long long)cols);
        *err = 1;
        return NULL;
    }
    if (!ld_dtype_is_weight(t->dtype)) {
        ld_set_error("%s: tensor '%s' has dtype %s, not a weight type", L->path, name, ld_dtype_name(t->dtype));
        *err = 1;
        return NULL;
    }
    return t;
}

// A vector (norm weight, bias) as fp32: in place when the file holds aligned fp32, else converted once.
static float *load_vec(Loader *L, const char *name, int64_t n, int optional, int *err) {
    const TensorRef *t = find_checked(L, name, 0, n, optional, err);
    if (!t) return NULL;
    if (t->dtype == LD_F32 && ((uintptr_t)t->data & 3) == 0) return (float *)t->data;
    float *v = own(L->m, ld_xmalloc(sizeof(float) * (size_t)n));
    ld_dequantize(t->dtype, t->data, v, (size_t)n);
    return v;
}

// A linear weight, left in its file format inside the map (unaligned fp32 is copied).
static Linear load_linear(Loader *L, const char *name, int64_t rows, int64_t cols, int *err) {
    Linear w = {0};
    const TensorRef *t = find_checked(L, name, rows, cols, 0, err);
    if (!t) return w;
    w.type = t->dtype;
    w.row_bytes = ld_dtype_nbytes(t->dtype, (uint64_t)cols);
    w.data = t->data;
    if (t->dtype == LD_F32 && ((uintptr_t)t->data & 3)) {
        void *copy = own(L->m, ld_xmalloc(t->nbytes));
        memcpy(copy, t->data, t->nbytes);
        w.data = copy;
    }
    return w;
}

// llama.cpp's converter interleaves Q/K rows of llama-arch models for its adjacent-pair rope: undo it so the
// forward pass always sees HF's half-split layout.
static Linear unpermute_qk(Model *m, Linear w, int n_heads, int head_dim) {
    uint8_t *o = own(m, ld_xmalloc(w.row_bytes * (size_t)n_heads * head_dim));
    const uint8_t *src = w.data;
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++)  // whole rows move: works for any row format
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(o + ((size_t)h * head_dim + j * half + i) * w.row_bytes, src + ((size_t)h * head_dim + 2 * i + j) * w.row_bytes,
                       w.row_bytes);
    w.data = o;
    return w;
}

// llama.cpp's converter stores Gemma norm weights as 1 + w; the forward pass applies (1 + w) itself.
static float *gemma_norm_from_gguf(Model *m, float *w, int n) {
    if (!w) return NULL;
    float *o = own(m, ld_xmalloc(sizeof(float) * (size_t)n));
    for (int i = 0; i < n; i++) o[i] = w[i] - 1.0f;
    return o;
}

// Every weight of the model with its names in both file kinds: one table for loading, training and exporting.
int model_tensors(Model *m, ModelTensor **out) {
    const ModelConfig *c = &m->cfg;
    int D = c->dim, hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads, F = c->ffn_dim, V = c->vocab;
    const char *px = m->hf_prefix[0] ? m->hf_prefix : "model.";
    int cap = 3 + c->n_layers * 17, n = 0;
    ModelTensor *t = ld_xcalloc((size_t)cap, sizeof *t);
#define ADD(HF, GG, LAYER, TARGET, LIN, VEC, ROWS, COLS, PRESENT, NORM, QK)                                                       \
    do {                                                                                                                          \
        if (!(PRESENT)) break;                                                                                                    \
        ModelTensor *added = &t[n++];                                                                                             \
        snprintf(added->hf, sizeof added->hf, "%s", HF);                                                                          \
        snprintf(added->gguf, sizeof added->gguf, "%s", GG);                                                                      \
        added->layer = LAYER, added->target = TARGET, added->lin = LIN, added->vec = VEC, added->rows = ROWS, added->cols = COLS; \
        added->is_norm = NORM, added->qk_heads = QK;                                                                              \
    } while (0)
    char hf[128], gg[64];
    snprintf(hf, sizeof hf, "%sembed_tokens.weight", px);
    ADD(hf, "token_embd.weight", -1, -1, &m->embed, NULL, V, D, 1, 0, 0);
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *w = &m->layers[l];
        int qk = c->arch == ARCH_LLAMA;  // llama.cpp's converter permutes Q/K rows of llama-arch models only
        struct {
            const char *hf, *gg;
            int target;
            Linear *lin;
            float **vec;
            int64_t rows, cols;
            int present, norm, qk_heads;
        } e[] = {
            {"input_layernorm.weight", "attn_norm.weight", -1, NULL, &w->attn_norm, 0, D, 1, 1, 0},
            {"self_attn.q_proj.weight", "attn_q.weight", LT_Q, &w->wq, NULL, (int64_t)Hq * hd, D, 1, 0, qk ? Hq : 0},
            {"self_attn.q_proj.bias", "attn_q.bias", -1, NULL, &w->bq, 0, (int64_t)Hq * hd, c->qkv_bias, 0, 0},
            {"self_attn.k_proj.weight", "attn_k.weight", LT_K, &w->wk, NULL, (int64_t)Hkv * hd, D, 1, 0, qk ? Hkv : 0},
            {"self_attn.k_proj.bias", "attn_k.bias", -1, NULL, &w->bk, 0, (int64_t)Hkv * hd, c->qkv_bias, 0, 0},
            {"self_attn.v_proj.weight", "attn_v.weight", LT_V, &w->wv, NULL, (int64_t)Hkv * hd, D, 1, 0, 0},
            {"self_attn.v_proj.bias", "attn_v.bias", -1, NULL, &w->bv, 0, (int64_t)Hkv * hd, c->qkv_bias, 0, 0},
            {"self_attn.o_proj.weight", "attn_output.weight", LT_O, &w->wo, NULL, D, (int64_t)Hq * hd, 1, 0, 0},
            {"self_attn.o_proj.bias", "attn_output.bias", -1, NULL, &w->bo, 0, D, c->o_bias, 0, 0},
            {"self_attn.q_norm.weight", "attn_q_norm.weight", -1, NULL, &w->q_norm, 0, hd, c->qk_norm, 1, 0},
            {"self_attn.k_norm.weight", "attn_k_norm.weight", -1, NULL, &w->k_norm, 0, hd, c->qk_norm, 1, 0},
            {"post_attention_layernorm.weight", "post_attention_norm.weight", -1, NULL, &w->post_attn_norm, 0, D, c->sandwich_norms, 1, 0},
            {c->sandwich_norms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight", "ffn_norm.weight", -1, NULL,
             &w->ffn_norm, 0, D, 1, 1, 0},
            {"post_feedforward_layernorm.weight", "post_ffw_norm.weight", -1, NULL, &w->post_ffn_norm, 0, D, c->sandwich_norms, 1, 0},
            {"mlp.gate_proj.weight", "ffn_gate.weight", LT_GATE, &w->w_gate, NULL, F, D, 1, 0, 0},
            {"mlp.up_proj.weight", "ffn_up.weight", LT_UP, &w->w_up, NULL, F, D, 1, 0, 0},
            {"mlp.down_proj.weight", "ffn_down.weight", LT_DOWN, &w->w_down, NULL, D, F, 1, 0, 0},
        };
        for (size_t k = 0; k < sizeof e / sizeof e[0]; k++) {
            snprintf(hf, sizeof hf, "%slayers.%d.%s", px, l, e[k].hf);
            snprintf(gg, sizeof gg, "blk.%d.%s", l, e[k].gg);
            ADD(hf, gg, l, e[k].target, e[k].lin, e[k].vec, e[k].rows, e[k].cols, e[k].present, e[k].norm, e[k].qk_heads);
        }
    }
    snprintf(hf, sizeof hf, "%snorm.weight", px);
    ADD(hf, "output_norm.weight", -1, -1, NULL, &m->final_norm, 0, D, 1, 1, 0);
    ADD("lm_head.weight", "output.weight", -1, -1, &m->lm_head, NULL, V, D, !c->tied_embeddings, 0, 0);
#undef ADD
    *out = t;
    return n;
}

static int load_weights(Loader *L) {
    Model *m = L->m;
    ModelConfig *c = &m->cfg;
    int err = 0;
    m->layers = ld_xcalloc((size_t)c->n_layers, sizeof(LayerWeights));
    ModelTensor *t;
    int n = model_tensors(m, &t);
    for (int i = 0; i < n && !err; i++) {
        const char *name = L->from_gguf ? t[i].gguf : t[i].hf;
        if (t[i].lin) {
            *t[i].lin = load_linear(L, name, t[i].rows, t[i].cols, &err);
            if (L->from_gguf && t[i].qk_heads && !err) *t[i].lin = unpermute_qk(m, *t[i].lin, t[i].qk_heads, c->head_dim);
        } else {
            *t[i].vec = load_vec(L, name, t[i].cols, 0, &err);
            if (L->from_gguf && c->norm_plus_one && t[i].is_norm && !err) *t[i].vec = gemma_norm_from_gguf(m, *t[i].vec, (int)t[i].cols);
        }
    }
    free(t);
    if (c->tied_embeddings) m->lm_head = m->embed;
    return err ? -1 : 0;
}

// Every weight as an owned, writable fp32 array, for training all of them (the file formats stay untouched).
void model_make_trainable(Model *m) {
    ModelTensor *t;
    int n = model_tensors(m, &t);
    for (int i = 0; i < n; i++) {
        if (t[i].lin) {
            size_t numel = (size_t)(t[i].rows * t[i].cols);
            float *w = own(m, ld_xmalloc(sizeof(float) * numel));
            ld_dequantize(t[i].lin->type, t[i].lin->data, w, numel);
            *t[i].lin = (Linear){w, LD_F32, sizeof(float) * (size_t)t[i].cols};
        } else {
            float *v = own(m, ld_xmalloc(sizeof(float) * (size_t)t[i].cols));
            memcpy(v, *t[i].vec, sizeof(float) * (size_t)t[i].cols);
            *t[i].vec = v;
        }
    }
    free(t);
    if (m->cfg.tied_embeddings) m->lm_head = m->embed;
}

Model *model_grad_new(const Model *m) {
    Model *g = ld_xcalloc(1, sizeof *g);
    g->cfg = m->cfg;
    g->cfg.layer_local = ld_xmalloc((size_t)m->cfg.n_layers);
    memcpy(g->cfg.layer_local, m->cfg.layer_local, (size_t)m->cfg.n_layers);
    g->layers = ld_xcalloc((size_t)m->cfg.n_layers, sizeof(LayerWeights));
    ModelTensor *t;
    int n = model_tensors(g, &t);
    for (int i = 0; i < n; i++) {
        if (t[i].lin)
            *t[i].lin =
                (Linear){own(g, ld_xcalloc((size_t)(t[i].rows * t[i].cols), sizeof(float))), LD_F32, sizeof(float) * (size_t)t[i].cols};
        else
            *t[i].vec = own(g, ld_xcalloc((size_t)t[i].cols, sizeof(float)));
    }
    free(t);
    if (g->cfg.tied_embeddings) g->lm_head = g->embed;
    return g;
}

// inv_freq[i] = 1 / theta^(2i/d), then the scaling rule; GGUF llama3 files carry per-pair divisors instead.
static float *rope_inv_freq(Model *m, const RopeParams *r, const float *freq_factors) {
    int half = m->cfg.head_dim / 2;
    float *f = own(m, ld_xmalloc(sizeof(float) * (size_t)half));
    for (int i = 0; i < half; i++) {
        float exponent = (float)(2 * i) / (float)m->cfg.head_dim;
        double inv = 1.0 / pow(r->theta, (double)exponent);
        if (freq_factors) inv /= freq_factors[i];
        if (r->scaling == ROPE_LINEAR) inv /= r->factor;
        if (r->scaling == ROPE_LLAMA3) {
            double low_wl = r->original_max_pos / r->low_freq_factor, high_wl = r->original_max_pos / r->high_freq_factor;
            double wl = 2 * M_PI / inv;
            if (wl > low_wl) {
                inv = inv / r->factor;
            } else if (wl >= high_wl) {
                double smooth = (r->original_max_pos / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                inv = (1 - smooth) * inv / r->factor + smooth * inv;
            }
        }
        f[i] = (float)inv;
    }
    return f;
}

static char *read_tokenizer_config(const char *dir, Model *m, int *bos, int *eos) {
    char *p = ld_path_join(dir, "tokenizer_config.json");
    char *txt = ld_file_exists(p) ? ld_read_file(p, NULL) : NULL;
    free(p);
    *bos = *eos = -1;
    if (!txt) return NULL;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    char *tmpl = NULL;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(ct)) tmpl = ld_xstrdup(ct->valuestring);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token");
    if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "content");
    if (cJSON_IsString(e) && m->tok) *eos = tok_find(m->tok, e->valuestring);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "bos_token");
    if (cJSON_IsObject(b)) b = cJSON_GetObjectItemCaseSensitive(b, "content");
    if (cJSON_IsString(b) && m->tok) *bos = tok_find(m->tok, b->valuestring);
    cJSON_Delete(root);
    return tmpl;
}

static int open_hf_files(const char *dir, ModelFiles *f) { return st_open_dir(dir, &f->st, &f->n_st); }

static void read_generation_eos(const char *dir, int *eos) {
    char *p = ld_path_join(dir, "generation_config.json");
    char *txt = ld_file_exists(p) ? ld_read_file(p, NULL) : NULL;
    free(p);
    if (!txt) return;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (cJSON_IsArray(e)) e = e->child;
    if (cJSON_IsNumber(e) && *eos < 0) *eos = e->valueint;
    cJSON_Delete(root);
}

Model *model_load(const char *path) {
    Model *m = ld_xcalloc(1, sizeof *m);
    m->path = ld_xstrdup(path);
    ModelFiles *files = ld_xcalloc(1, sizeof *files);
    m->files = files;
    Loader L = {m, files, path, 0, "model."};
    int bos = -1, eos = -1;
    const float *freq_factors = NULL;
    if (ld_is_dir(path)) {
        char *cfgp = ld_path_join(path, "config.json");
        int rc = parse_hf_config(cfgp, &m->cfg);
        free(cfgp);
        if (rc || open_hf_files(path, files)) goto fail;
        static const char *prefixes[] = {"model.", "language_model.model.", "model.language_model."};
        for (size_t i = 0; i < 3; i++) {
            char n[128];
            snprintf(n, sizeof n, "%sembed_tokens.weight", prefixes[i]);
            L.prefix = prefixes[i];
            snprintf(m->hf_prefix, sizeof m->hf_prefix, "%s", prefixes[i]);
            if (find_tensor(&L, n)) break;
        }
        char *tp = ld_path_join(path, "tokenizer.json");
        m->tok = tok_load_hf_file(tp);
        free(tp);
        if (!m->tok) goto fail;
        m->chat_template = read_tokenizer_config(path, m, &bos, &eos);
        read_generation_eos(path, &eos);
    } else {
        files->gguf = ld_xcalloc(1, sizeof(Gguf));
        if (gguf_open(path, files->gguf) || model_config_from_gguf(files->gguf, &m->cfg)) goto fail;
        L.from_gguf = 1;
        m->tok = tok_load_gguf(files->gguf);
        if (!m->tok) goto fail;
        m->chat_template = gguf_get_str(files->gguf, "tokenizer.chat_template");
        const TensorRef *rf = gguf_find(files->gguf, "rope_freqs.weight");
        if (rf && rf->dtype == LD_F32 && rf->n_dims == 1 && rf->shape[0] == m->cfg.head_dim / 2) freq_factors = (const float *)rf->data;
    }
    if (tok_vocab_size(m->tok) > m->cfg.vocab) {
        ld_set_error("%s: tokenizer has %d tokens but the model's vocabulary is %d", path, tok_vocab_size(m->tok), m->cfg.vocab);
        goto fail;
    }
    tok_set_bos_eos(m->tok, bos, eos);
    if (load_weights(&L)) goto fail;
    m->inv_freq_global = rope_inv_freq(m, &m->cfg.rope_global, freq_factors);
    m->inv_freq_local = rope_inv_freq(m, &m->cfg.rope_local, NULL);
    return m;
fail:
    model_free(m);
    return NULL;
}
