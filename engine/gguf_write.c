// GGUF v3 writer: the metadata of an existing file carried over key by key, new tensors appended in 32-byte
// aligned data (the layout gguf.c reads and llama.cpp loads).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

static const int k_elem_size[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

int gguf_type_id(LdDtype t) {
    switch (t) {
        case LD_F32:
            return 0;
        case LD_F16:
            return 1;
        case LD_Q8_0:
            return 8;
        case LD_BF16:
            return 30;
        default:
            return -1;
    }
}

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n; }
static int put_u32(FILE *f, uint32_t v) { return put(f, &v, 4); }
static int put_u64(FILE *f, uint64_t v) { return put(f, &v, 8); }
static int put_str(FILE *f, const char *s, uint64_t n) { return put_u64(f, n) && put(f, s, n); }

static int put_scalar(FILE *f, const GgufKv *kv) {
    switch (kv->type) {
        case GGUF_STRING:
            return put_str(f, kv->v.s.ptr, kv->v.s.len);
        case GGUF_F32: {
            float x = (float)kv->v.f;
            return put(f, &x, 4);
        }
        case GGUF_F64:
            return put(f, &kv->v.f, 8);
        case GGUF_I8:
        case GGUF_I16:
        case GGUF_I32:
        case GGUF_I64: {
            int64_t x = kv->v.i;  // little-endian: the low bytes are the narrower value
            return put(f, &x, (size_t)k_elem_size[kv->type]);
        }
        default: {
            uint64_t x = kv->v.u;
            return put(f, &x, (size_t)k_elem_size[kv->type]);
        }
    }
}

static int put_kv(FILE *f, const GgufKv *kv) {
    if (!put_str(f, kv->key, strlen(kv->key)) || !put_u32(f, (uint32_t)kv->type)) return 0;
    if (kv->type != GGUF_ARRAY) return put_scalar(f, kv);
    if (!put_u32(f, (uint32_t)kv->arr_type) || !put_u64(f, kv->arr_len)) return 0;
    if (kv->arr_type != GGUF_STRING) return put(f, kv->arr, kv->arr_len * (uint64_t)k_elem_size[kv->arr_type]);
    for (uint64_t i = 0; i < kv->arr_len; i++)
        if (!put_str(f, kv->arr_strs[i].ptr, kv->arr_strs[i].len)) return 0;
    return 1;
}

static int pad_to(FILE *f, uint64_t *pos, uint64_t align) {
    static const uint8_t zeros[32];
    uint64_t n = (align - *pos % align) % align;
    *pos += n;
    return put(f, zeros, n);
}

int gguf_write(const char *path, const Gguf *meta, uint32_t file_type, const GgufOutTensor *t, int n,
               int (*produce)(int i, void *dst, void *ctx), void *ctx) {
    const uint64_t align = 32;
    int n_kv = 1;
    for (int i = 0; i < meta->n_kvs; i++)
        n_kv += strcmp(meta->kvs[i].key, "general.file_type") && strcmp(meta->kvs[i].key, "general.alignment");
    size_t *bytes = ld_xcalloc((size_t)n + 1, sizeof(size_t)), biggest = 1;
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].n_dims; d++) numel *= (uint64_t)t[i].shape[d];
        bytes[i] = ld_dtype_nbytes(t[i].type, numel);
        if (gguf_type_id(t[i].type) < 0 || !bytes[i]) {
            ld_set_error("%s: tensor %s cannot be written as %s", path, t[i].name, ld_dtype_name(t[i].type));
            free(bytes);
            return -1;
        }
        if (bytes[i] > biggest) biggest = bytes[i];
    }
    char *tmp;
    FILE *f = ld_atomic_open(path, &tmp);
    if (!f) {
        free(bytes);
        return -1;
    }
    int ok = put(f, "GGUF", 4) && put_u32(f, 3) && put_u64(f, (uint64_t)n) && put_u64(f, (uint64_t)n_kv);
    for (int i = 0; i < meta->n_kvs && ok; i++)
        if (strcmp(meta->kvs[i].key, "general.file_type") && strcmp(meta->kvs[i].key, "general.alignment")) ok = put_kv(f, &meta->kvs[i]);
    GgufKv ft = {.key = "general.file_type", .type = GGUF_U32, .v.u = file_type};
    ok = ok && put_kv(f, &ft);
    uint64_t off = 0;
    for (int i = 0; i < n && ok; i++) {  // infos: name, dims innermost first, type, offset into the data
        ok = put_str(f, t[i].name, strlen(t[i].name)) && put_u32(f, (uint32_t)t[i].n_dims);
        for (int d = t[i].n_dims - 1; d >= 0 && ok; d--) ok = put_u64(f, (uint64_t)t[i].shape[d]);
        ok = ok && put_u32(f, (uint32_t)gguf_type_id(t[i].type)) && put_u64(f, off);
        off += (bytes[i] + align - 1) / align * align;
    }
    long here = ok ? ftell(f) : -1;
    uint64_t pos = here < 0 ? 0 : (uint64_t)here;
    ok = ok && here >= 0 && pad_to(f, &pos, align);
    uint8_t *buf = ld_xmalloc(biggest);
    for (int i = 0; i < n && ok; i++) {
        ok = produce(i, buf, ctx) == 0 && put(f, buf, bytes[i]);
        pos += bytes[i];
        ok = ok && pad_to(f, &pos, align);
    }
    free(buf), free(bytes);
    return ld_atomic_commit(f, tmp, path, ok);
}
