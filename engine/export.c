#include "export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "kernels.h"
#include "safetensors.h"
#include "util.h"

typedef struct {
    Model *m;
    const Lora *l;
    ModelTensor *t;
    int n, merged, gguf;
    const GgufOutTensor *out;
    float *scratch;  // the largest tensor in fp32
} Exporter;

// Tensor i in fp32, HF layout and meaning, with the adapter merged in.
static void merged_tensor(Exporter *e, int i, float *dst) {
    const ModelTensor *t = &e->t[i];
    if (!t->lin) {
        memcpy(dst, *t->vec, sizeof(float) * (size_t)t->cols);
        return;
    }
    ld_dequantize(t->lin->type, t->lin->data, dst, (size_t)(t->rows * t->cols));
    const LoraPair *p = e->l && t->target >= 0 ? &e->l->w[t->layer * LT_COUNT + t->target] : NULL;
    if (!p || !p->A) return;
    float *ba = ld_xmalloc(sizeof(float) * (size_t)p->out * p->in);
    k_matmul_backward(ba, NULL, NULL, p->B, NULL, p->A, p->out, p->in, e->l->rank);  // B[out,r]·A[r,in]
    for (size_t k = 0; k < (size_t)p->out * p->in; k++) dst[k] += e->l->scale * ba[k];
    free(ba);
    e->merged++;
}

static int produce_hf(int i, float *dst, void *ctx) {
    merged_tensor(ctx, i, dst);
    return 0;
}

// The GGUF form: Q/K rows of llama-arch models interleaved per head (llama.cpp's adjacent-pair rope), Gemma
// norm weights as 1 + w, then encoded in the tensor's type.
static int produce_gguf(int i, void *dst, void *ctx) {
    Exporter *e = ctx;
    const ModelTensor *t = &e->t[i];
    float *x = e->scratch;
    merged_tensor(e, i, x);
    size_t numel = (size_t)(t->lin ? t->rows * t->cols : t->cols);
    if (t->qk_heads) {
        int hd = e->m->cfg.head_dim, half = hd / 2;
        float *o = ld_xmalloc(sizeof(float) * numel);
        for (int h = 0; h < t->qk_heads; h++)
            for (int k = 0; k < half; k++)
                for (int j = 0; j < 2; j++)
                    memcpy(o + ((size_t)h * hd + 2 * k + j) * t->cols, x + ((size_t)h * hd + j * half + k) * t->cols,
                           sizeof(float) * (size_t)t->cols);
        memcpy(x, o, sizeof(float) * numel);
        free(o);
    }
    if (t->is_norm && e->m->cfg.norm_plus_one)
        for (size_t k = 0; k < numel; k++) x[k] += 1.0f;
    return ld_quantize(e->out[i].type, x, dst, numel);
}

static int copy_file(const char *src, const char *dst) {
    size_t n;
    char *s = ld_read_file(src, &n);
    if (!s) return -1;
    char *tmp;
    FILE *f = ld_atomic_open(dst, &tmp);
    int rc = f ? ld_atomic_commit(f, tmp, dst, fwrite(s, 1, n, f) == n) : -1;
    free(s);
    return rc;
}

int export_hf(Model *m, const Lora *l, const char *out, int *n_tensors, int *n_merged) {
    if (!ld_is_dir(m->path)) {
        ld_set_error(
            "%s: an HF directory export needs an HF base model (its config and tokenizer files are copied); "
            "export this GGUF base as GGUF",
            m->path);
        return -1;
    }
    if (ld_mkdir_p(out)) return -1;
    Exporter e = {m, l, NULL, 0, 0, 0, NULL, NULL};
    e.n = model_tensors(m, &e.t);
    StWriteTensor *ts = ld_xcalloc((size_t)e.n, sizeof(StWriteTensor));
    for (int i = 0; i < e.n; i++) {
        ts[i] = (StWriteTensor){e.t[i].hf, NULL, e.t[i].lin ? 2 : 1, {0}};
        if (e.t[i].lin)
            ts[i].shape[0] = e.t[i].rows, ts[i].shape[1] = e.t[i].cols;
        else
            ts[i].shape[0] = e.t[i].cols;
    }
    char *dst = ld_path_join(out, "model.safetensors");
    int rc = st_write_f32_stream(dst, ts, e.n, produce_hf, &e);
    static const char *const extra[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                        "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0] && !rc; i++) {
        char *s = ld_path_join(m->path, extra[i]), *d = ld_path_join(out, extra[i]);
        if (ld_file_exists(s)) rc = copy_file(s, d);
        free(s), free(d);
    }
    *n_tensors = e.n, *n_merged = e.merged;
    free(dst), free(ts), free(e.t);
    return rc;
}

int export_gguf(Model *m, const Lora *l, LdDtype type, const char *out_path, int *n_tensors, int *n_merged) {
    const Gguf *base = model_gguf(m);
    if (!base) {
        ld_set_error(
            "%s: a GGUF export needs a GGUF base model (its tokenizer and metadata are carried over); convert the base "
            "with llama.cpp's convert_hf_to_gguf.py and export against that — an adapter applies to either",
            m->path);
        return -1;
    }
    uint32_t file_type;  // llama.cpp's LLAMA_FTYPE of the whole file
    switch (type) {
        case LD_F32:
            file_type = 0;
            break;
        case LD_F16:
            file_type = 1;
            break;
        case LD_Q8_0:
            file_type = 7;
            break;
        case LD_BF16:
            file_type = 32;
            break;
        default:
            ld_set_error("GGUF export writes F32, F16, BF16 or Q8_0, not %s", ld_dtype_name(type));
            return -1;
    }
    Exporter e = {m, l, NULL, 0, 0, 1, NULL, NULL};
    e.n = model_tensors(m, &e.t);
    GgufOutTensor *ot = ld_xcalloc((size_t)e.n, sizeof(GgufOutTensor));
    size_t biggest = 1;
    for (int i = 0; i < e.n; i++) {
        const ModelTensor *t = &e.t[i];
        LdDtype tt = t->lin ? type : LD_F32;
        if (t->lin && !ld_dtype_nbytes(tt, (uint64_t)t->cols)) tt = LD_F16;  // rows not whole blocks
        ot[i] = (GgufOutTensor){t->gguf, tt, t->lin ? 2 : 1, {0}};
        if (t->lin)
            ot[i].shape[0] = t->rows, ot[i].shape[1] = t->cols;
        else
            ot[i].shape[0] = t->cols;
        size_t numel = (size_t)(t->lin ? t->rows * t->cols : t->cols);
        if (numel > biggest) biggest = numel;
    }
    e.out = ot;
    e.scratch = ld_xmalloc(sizeof(float) * biggest);
    int rc = gguf_write(out_path, base, file_type, ot, e.n, produce_gguf, &e);
    *n_tensors = e.n, *n_merged = e.merged;
    free(e.scratch), free(ot), free(e.t);
    return rc;
}
