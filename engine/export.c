#include "export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "safetensors.h"
#include "util.h"

// Which layer and target an HF tensor name is ("model.layers.3.mlp.up_proj.weight" -> 3, LT_UP), or -1.
static int parse_target(const char *name, int *layer) {
    const char *p = strstr(name, "layers.");
    if (!p) return -1;
    *layer = atoi(p + 7);
    for (int t = 0; t < LT_COUNT; t++) {
        char want[48];
        snprintf(want, sizeof want, ".%s.weight", lora_target_name((LoraTarget)t));
        size_t n = strlen(name), w = strlen(want);
        if (n > w && !strcmp(name + n - w, want)) return t;
    }
    return -1;
}

static int copy_file(const char *src, const char *dst) {
    size_t n;
    char *s = ld_read_file(src, &n);
    if (!s) return -1;
    FILE *f = fopen(dst, "wb");
    int ok = f && fwrite(s, 1, n, f) == n;
    if (f && fclose(f)) ok = 0;
    free(s);
    if (!ok) ld_set_error("%s: cannot write", dst);
    return ok ? 0 : -1;
}

int export_merged_hf(const char *model, const Lora *l, const char *out, int *n_tensors, int *n_merged) {
    SafeTensors *files = NULL;
    int n_files = 0, total = 0, merged = 0, k = 0, rc = -1;
    StWriteTensor *ts = NULL;
    float **bufs = NULL;
    char *dst = NULL;
    if (!ld_is_dir(model)) {
        ld_set_error("%s: export needs the base model as an HF directory (GGUF input is not supported yet)", model);
        return -1;
    }
    if (ld_mkdir_p(out)) return -1;
    if (st_open_dir(model, &files, &n_files)) goto fail;  // every tensor of every shard, in file order
    for (int f = 0; f < n_files; f++) total += files[f].n_tensors;
    ts = ld_xcalloc((size_t)total, sizeof(StWriteTensor));
    bufs = ld_xcalloc((size_t)total, sizeof(float *));
    for (int f = 0; f < n_files; f++)
        for (int i = 0; i < files[f].n_tensors; i++, k++) {
            const TensorRef *t = &files[f].tensors[i];
            size_t n = (size_t)ld_tensor_numel(t);
            if (!ld_dtype_is_weight(t->dtype)) { ld_set_error("%s: tensor %s has dtype %s", files[f].path, t->name, ld_dtype_name(t->dtype)); goto fail; }
            bufs[k] = ld_xmalloc(sizeof(float) * (n ? n : 1));
            ld_dequantize(t->dtype, t->data, bufs[k], n);
            int layer, target = parse_target(t->name, &layer);
            if (target >= 0 && layer < l->n_layers && l->w[layer * LT_COUNT + target].A) {
                const LoraPair *p = &l->w[layer * LT_COUNT + target];
                float *ba = ld_xmalloc(sizeof(float) * (size_t)p->out * p->in);
                k_matmul_backward(ba, NULL, NULL, p->B, NULL, p->A, p->out, p->in, l->rank);  // B[out,r]·A[r,in]
                for (size_t e = 0; e < (size_t)p->out * p->in; e++) bufs[k][e] += l->scale * ba[e];
                free(ba);
                merged++;
            }
            ts[k] = (StWriteTensor){t->name, bufs[k], t->n_dims, {0}};
            for (int d = 0; d < t->n_dims; d++) ts[k].shape[d] = t->shape[d];
        }
    dst = ld_path_join(out, "model.safetensors");
    if (st_write_f32(dst, ts, total)) goto fail;
    static const char *const extra[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                        "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        char *s = ld_path_join(model, extra[i]), *d = ld_path_join(out, extra[i]);
        int bad = ld_file_exists(s) && copy_file(s, d);
        free(s), free(d);
        if (bad) goto fail;
    }
    *n_tensors = total, *n_merged = merged;
    rc = 0;
fail:
    for (int i = 0; i < k; i++) free(bufs[i]);
    for (int f = 0; f < n_files; f++) st_close(&files[f]);
    free(bufs), free(ts), free(files), free(dst);
    return rc;
}
