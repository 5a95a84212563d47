#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u * 1024 * 1024)  // the format's own limit

int64_t ld_tensor_numel(const TensorRef *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

static int st_dtype(const char *s, LdDtype *out) {
    static const struct {
        const char *name;
        LdDtype t;
    } map[] = {{"F32", LD_F32}, {"F16", LD_F16}, {"BF16", LD_BF16}, {"F64", LD_F64}, {"I64", LD_I64},
               {"I32", LD_I32}, {"I16", LD_I16}, {"I8", LD_I8},     {"U8", LD_U8},   {"BOOL", LD_BOOL}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i].name)) {
            *out = map[i].t;
            return 0;
        }
    return -1;
}

static void st_free_tensors(SafeTensors *st) {
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    st->tensors = NULL;
    st->n_tensors = 0;
}

int st_parse(const uint8_t *buf, size_t size, const char *path, SafeTensors *out) {
    out->tensors = NULL;
    out->n_tensors = 0;
    if (size < 8) {
        ld_set_error("%s: not a safetensors file (shorter than its 8-byte header length)", path);
        return -1;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER) {
        ld_set_error("%s: safetensors header length %llu exceeds the 100 MB limit", path, (unsigned long long)hlen);
        return -1;
    }
    if (hlen > size - 8) {
        ld_set_error("%s: safetensors header length %llu runs past the end of the file (%zu bytes)", path, (unsigned long long)hlen, size);
        return -1;
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        ld_set_error("%s: safetensors header is not a JSON object", path);
        cJSON_Delete(root);
        return -1;
    }
    int cap = cJSON_GetArraySize(root);
    out->tensors = ld_xcalloc((size_t)cap + 1, sizeof(TensorRef));
    for (cJSON *e = root->child; e; e = e->next) {
        if (!e->string) goto bad_entry;
        if (!strcmp(e->string, "__metadata__")) continue;
        TensorRef *t = &out->tensors[out->n_tensors];
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2) {
            ld_set_error("%s: tensor '%s': entry needs dtype, shape and data_offsets", path, e->string);
            goto fail;
        }
        if (st_dtype(dt->valuestring, &t->dtype)) {
            ld_set_error("%s: tensor '%s': unknown dtype '%s'", path, e->string, dt->valuestring);
            goto fail;
        }
        int nd = cJSON_GetArraySize(sh);
        if (nd > LD_MAX_DIMS) {
            ld_set_error("%s: tensor '%s': %d dimensions (at most %d supported)", path, e->string, nd, LD_MAX_DIMS);
            goto fail;
        }
        t->n_dims = nd;
        uint64_t numel = 1;
        for (int i = 0; i < nd; i++) {
            cJSON *d = cJSON_GetArrayItem(sh, i);
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 4e15 || d->valuedouble != (double)(int64_t)d->valuedouble) {
                ld_set_error("%s: tensor '%s': bad shape", path, e->string);
                goto fail;
            }
            t->shape[i] = (int64_t)d->valuedouble;
            if (t->shape[i] && numel > UINT64_MAX / (uint64_t)t->shape[i]) {
                ld_set_error("%s: tensor '%s': shape overflows", path, e->string);
                goto fail;
            }
            numel *= (uint64_t)t->shape[i];
        }
        cJSON *o0 = cJSON_GetArrayItem(off, 0), *o1 = cJSON_GetArrayItem(off, 1);
        if (!cJSON_IsNumber(o0) || !cJSON_IsNumber(o1) || o0->valuedouble < 0 || o1->valuedouble < o0->valuedouble ||
            o1->valuedouble > (double)data_size) {
            ld_set_error("%s: tensor '%s': data_offsets out of range (data section is %zu bytes)", path, e->string, data_size);
            goto fail;
        }
        size_t begin = (size_t)o0->valuedouble, end = (size_t)o1->valuedouble;
        size_t want = ld_dtype_nbytes(t->dtype, numel);
        if (want != end - begin) {
            ld_set_error("%s: tensor '%s': shape x dtype is %zu bytes but data_offsets span %zu", path, e->string, want, end - begin);
            goto fail;
        }
        t->data = data + begin;
        t->nbytes = end - begin;
        t->name = ld_xstrdup(e->string);
        out->n_tensors++;
        continue;
    bad_entry:
        ld_set_error("%s: malformed safetensors header", path);
        goto fail;
    }
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    st_free_tensors(out);
    return -1;
}

int st_open(const char *path, SafeTensors *out) {
    memset(out, 0, sizeof *out);
    if (ld_map_file(path, &out->map)) return -1;
    if (st_parse(out->map.data, out->map.size, path, out)) {
        ld_unmap_file(&out->map);
        return -1;
    }
    out->path = ld_xstrdup(path);
    return 0;
}

const TensorRef *st_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

void st_close(SafeTensors *st) {
    st_free_tensors(st);
    ld_unmap_file(&st->map);
    free(st->path);
    st->path = NULL;
}

static int from_memory(int i, float *dst, void *ctx) {
    const StWriteTensor *t = (const StWriteTensor *)ctx + i;
    size_t numel = 1;
    for (int d = 0; d < t->n_dims; d++) numel *= (size_t)t->shape[d];
    memcpy(dst, t->data, numel * sizeof(float));
    return 0;
}

int st_write_f32(const char *path, const StWriteTensor *tensors, int n) {
    return st_write_f32_stream(path, tensors, n, from_memory, (void *)tensors);
}

int st_write_f32_stream(const char *path, const StWriteTensor *tensors, int n, int (*produce)(int i, float *dst, void *ctx), void *ctx) {
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t off = 0, biggest = 1;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        cJSON *e = cJSON_AddObjectToObject(h, tensors[i].name), *shape = cJSON_AddArrayToObject(e, "shape"),
              *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddStringToObject(e, "dtype", "F32");
        for (int d = 0; d < tensors[i].n_dims; d++) {
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensors[i].shape[d]));
            numel *= (size_t)tensors[i].shape[d];
        }
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += numel * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        if (numel > biggest) biggest = numel;
    }
    char *hj = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = strlen(hj), padded = (hl + 7) / 8 * 8;
    char *tmp;
    FILE *f = ld_atomic_open(path, &tmp);
    if (!f) {
        free(hj);
        return -1;
    }
    uint64_t len = padded;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hj, 1, hl, f) == hl;
    for (size_t i = hl; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
    float *buf = ld_xmalloc(biggest * sizeof(float));
    for (int i = 0; i < n && ok; i++) {
        size_t numel = 1;
        for (int d = 0; d < tensors[i].n_dims; d++) numel *= (size_t)tensors[i].shape[d];
        ok = produce(i, buf, ctx) == 0 && fwrite(buf, 4, numel, f) == numel;
    }
    free(buf);
    free(hj);
    return ld_atomic_commit(f, tmp, path, ok);
}

// The tensors of an HF model directory: model.safetensors, or every shard model.safetensors.index.json names.
int st_open_dir(const char *dir, SafeTensors **files, int *n_files) {
    *files = NULL;
    *n_files = 0;
    SafeTensors **fst = files;
    int *fn = n_files;
    char *index = ld_path_join(dir, "model.safetensors.index.json");
    if (!ld_file_exists(index)) {
        free(index);
        char *single = ld_path_join(dir, "model.safetensors");
        (*fst) = ld_xcalloc(1, sizeof(SafeTensors));
        int rc = st_open(single, &(*fst)[0]);
        free(single);
        if (rc == 0) (*fn) = 1;
        return rc;
    }
    char *txt = ld_read_file(index, NULL);
    cJSON *root = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        ld_set_error("%s: no weight_map object", index);
        free(index);
        cJSON_Delete(root);
        return -1;
    }
    free(index);
    int cap = cJSON_GetArraySize(wm), rc = 0;
    (*fst) = ld_xcalloc((size_t)cap + 1, sizeof(SafeTensors));
    char **seen = ld_xcalloc((size_t)cap + 1, sizeof(char *));
    for (const cJSON *e = wm->child; e && !rc; e = e->next) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
            ld_set_error("%s/model.safetensors.index.json: bad shard name for '%s'", dir, e->string ? e->string : "?");
            rc = -1;
            break;
        }
        int dup = 0;
        for (int i = 0; i < (*fn) && !dup; i++) dup = !strcmp(seen[i], e->valuestring);
        if (dup) continue;
        char *p = ld_path_join(dir, e->valuestring);
        rc = st_open(p, &(*fst)[(*fn)]);
        free(p);
        if (!rc) seen[(*fn)++] = e->valuestring;
    }
    free(seen);
    cJSON_Delete(root);
    return rc;
}
