#include "gguf.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p, *end;
    const char *path;
} Rd;

static const int k_scalar_size[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static int need(Rd *r, uint64_t n, const char *what) {
    if ((uint64_t)(r->end - r->p) < n) {
        ld_set_error("%s: GGUF truncated while reading %s", r->path, what);
        return -1;
    }
    return 0;
}
static int rd_u32(Rd *r, uint32_t *v, const char *what) {
    if (need(r, 4, what)) return -1;
    memcpy(v, r->p, 4);
    r->p += 4;
    return 0;
}
static int rd_u64(Rd *r, uint64_t *v, const char *what) {
    if (need(r, 8, what)) return -1;
    memcpy(v, r->p, 8);
    r->p += 8;
    return 0;
}
static int rd_str(Rd *r, GgufStr *s, const char *what) {
    if (rd_u64(r, &s->len, what) || need(r, s->len, what)) return -1;
    s->ptr = (const char *)r->p;
    r->p += s->len;
    return 0;
}

static int rd_scalar(Rd *r, GgufType t, GgufKv *kv, const char *key) {
    if (t == GGUF_STRING) return rd_str(r, &kv->v.s, key);
    if (need(r, (uint64_t)k_scalar_size[t], key)) return -1;
    const uint8_t *p = r->p;
    switch (t) {
        case GGUF_U8:
            kv->v.u = p[0];
            break;
        case GGUF_I8:
            kv->v.i = (int8_t)p[0];
            break;
        case GGUF_BOOL:
            kv->v.u = p[0] != 0;
            break;
        case GGUF_U16: {
            uint16_t x;
            memcpy(&x, p, 2);
            kv->v.u = x;
            break;
        }
        case GGUF_I16: {
            int16_t x;
            memcpy(&x, p, 2);
            kv->v.i = x;
            break;
        }
        case GGUF_U32: {
            uint32_t x;
            memcpy(&x, p, 4);
            kv->v.u = x;
            break;
        }
        case GGUF_I32: {
            int32_t x;
            memcpy(&x, p, 4);
            kv->v.i = x;
            break;
        }
        case GGUF_F32: {
            float x;
            memcpy(&x, p, 4);
            kv->v.f = x;
            break;
        }
        case GGUF_U64: {
            uint64_t x;
            memcpy(&x, p, 8);
            kv->v.u = x;
            break;
        }
        case GGUF_I64: {
            int64_t x;
            memcpy(&x, p, 8);
            kv->v.i = x;
            break;
        }
        case GGUF_F64: {
            double x;
            memcpy(&x, p, 8);
            kv->v.f = x;
            break;
        }
        default:
            return -1;
    }
    r->p += k_scalar_size[t];
    return 0;
}

static int ggml_type(uint32_t t, LdDtype *out) {
    switch (t) {
        case 0:
            *out = LD_F32;
            return 0;
        case 1:
            *out = LD_F16;
            return 0;
        case 2:
            *out = LD_Q4_0;
            return 0;
        case 3:
            *out = LD_Q4_1;
            return 0;
        case 6:
            *out = LD_Q5_0;
            return 0;
        case 7:
            *out = LD_Q5_1;
            return 0;
        case 8:
            *out = LD_Q8_0;
            return 0;
        case 12:
            *out = LD_Q4_K;
            return 0;
        case 13:
            *out = LD_Q5_K;
            return 0;
        case 14:
            *out = LD_Q6_K;
            return 0;
        case 30:
            *out = LD_BF16;
            return 0;
        default:
            return -1;
    }
}

// Frees what gguf_parse built (metadata and tensor tables), leaving the map alone.
static void free_tables(Gguf *g) {
    for (int i = 0; i < g->n_kvs; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].arr_strs);
    }
    free(g->kvs);
    for (int i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    g->kvs = NULL;
    g->tensors = NULL;
    g->n_kvs = g->n_tensors = 0;
}

void gguf_close(Gguf *g) {
    free_tables(g);
    ld_unmap_file(&g->map);
    free(g->path);
    memset(g, 0, sizeof *g);
}

static char *dup_str(GgufStr s) {
    char *d = ld_xmalloc(s.len + 1);
    memcpy(d, s.ptr, s.len);
    d[s.len] = 0;
    return d;
}

int gguf_parse(const uint8_t *buf, size_t size, const char *path, Gguf *g) {
    Rd r = {buf, buf + size, path};
    g->kvs = NULL;
    g->tensors = NULL;
    g->n_kvs = g->n_tensors = 0;
    if (size < 4 || memcmp(buf, "GGUF", 4)) {
        ld_set_error("%s: not a GGUF file (bad magic)", path);
        return -1;
    }
    r.p += 4;
    uint64_t n_tensors, n_kv;
    if (rd_u32(&r, &g->version, "version")) return -1;
    if (g->version != 2 && g->version != 3) {
        ld_set_error("%s: GGUF version %u is not supported (2 and 3 are)", path, g->version);
        return -1;
    }
    if (rd_u64(&r, &n_tensors, "tensor count") || rd_u64(&r, &n_kv, "metadata count")) return -1;
    // Every kv and tensor info takes at least 8 bytes: bounds the counts by the file size.
    if (n_kv > size / 8 || n_tensors > size / 8) {
        ld_set_error("%s: GGUF counts (%llu tensors, %llu keys) exceed the file size", path, (unsigned long long)n_tensors,
                     (unsigned long long)n_kv);
        return -1;
    }
    g->kvs = ld_xcalloc(n_kv + 1, sizeof(GgufKv));
    for (uint64_t k = 0; k < n_kv; k++) {
        GgufKv *kv = &g->kvs[g->n_kvs];
        GgufStr key;
        uint32_t type;
        if (rd_str(&r, &key, "metadata key") || rd_u32(&r, &type, "metadata type")) goto fail;
        kv->key = dup_str(key);
        g->n_kvs++;
        if (type >= GGUF_TYPE_COUNT) {
            ld_set_error("%s: metadata '%s' has unknown type %u", path, kv->key, type);
            goto fail;
        }
        kv->type = (GgufType)type;
        if (type != GGUF_ARRAY) {
            if (rd_scalar(&r, kv->type, kv, kv->key)) goto fail;
            continue;
        }
        uint32_t at;
        if (rd_u32(&r, &at, kv->key) || rd_u64(&r, &kv->arr_len, kv->key)) goto fail;
        if (at >= GGUF_TYPE_COUNT || at == GGUF_ARRAY) {
            ld_set_error("%s: metadata '%s': unsupported array element type %u", path, kv->key, at);
            goto fail;
        }
        kv->arr_type = (GgufType)at;
        kv->arr = r.p;
        if (at == GGUF_STRING) {
            if (kv->arr_len > (uint64_t)(r.end - r.p) / 8) {
                ld_set_error("%s: metadata '%s': array length runs past the end of the file", path, kv->key);
                goto fail;
            }
            kv->arr_strs = ld_xmalloc(sizeof(GgufStr) * (kv->arr_len + 1));
            for (uint64_t i = 0; i < kv->arr_len; i++)
                if (rd_str(&r, &kv->arr_strs[i], kv->key)) goto fail;
        } else {
            uint64_t es = (uint64_t)k_scalar_size[at];
            if (kv->arr_len > (uint64_t)(r.end - r.p) / es) {
                ld_set_error("%s: metadata '%s': array length runs past the end of the file", path, kv->key);
                goto fail;
            }
            r.p += kv->arr_len * es;
        }
    }
    uint64_t align = (uint64_t)gguf_get_int(g, "general.alignment", 32);
    if (align == 0 || (align & (align - 1)) || align > (1u << 20)) {
        ld_set_error("%s: general.alignment %llu is not a power of two", path, (unsigned long long)align);
        goto fail;
    }
    g->tensors = ld_xcalloc(n_tensors + 1, sizeof(TensorRef));
    uint64_t *offsets = ld_xcalloc(n_tensors + 1, sizeof(uint64_t));
    for (uint64_t k = 0; k < n_tensors; k++) {
        TensorRef *t = &g->tensors[g->n_tensors];
        GgufStr name;
        uint32_t nd, type;
        if (rd_str(&r, &name, "tensor name")) goto fail_off;
        t->name = dup_str(name);
        g->n_tensors++;
        if (rd_u32(&r, &nd, t->name)) goto fail_off;
        if (nd == 0 || nd > LD_MAX_DIMS) {
            ld_set_error("%s: tensor '%s' has %u dimensions", path, t->name, nd);
            goto fail_off;
        }
        t->n_dims = (int)nd;
        uint64_t numel = 1;
        for (uint32_t i = 0; i < nd; i++) {  // GGUF lists ne[0] (innermost) first: reverse to outermost-first
            uint64_t d;
            if (rd_u64(&r, &d, t->name)) goto fail_off;
            if (d > (1ull << 40) || (d && numel > UINT64_MAX / d)) {
                ld_set_error("%s: tensor '%s': dimension %llu too large", path, t->name, (unsigned long long)d);
                goto fail_off;
            }
            numel *= d;
            t->shape[nd - 1 - i] = (int64_t)d;
        }
        if (rd_u32(&r, &type, t->name) || rd_u64(&r, &offsets[k], t->name)) goto fail_off;
        if (ggml_type(type, &t->dtype)) {
            ld_set_error("%s: tensor '%s' has unsupported ggml type %u", path, t->name, type);
            goto fail_off;
        }
        t->nbytes = ld_dtype_nbytes(t->dtype, numel);
        if (numel && !t->nbytes) {
            ld_set_error("%s: tensor '%s': %llu elements is not a whole number of %s blocks", path, t->name, (unsigned long long)numel,
                         ld_dtype_name(t->dtype));
            goto fail_off;
        }
    }
    uint64_t pos = (uint64_t)(r.p - buf), data_start = (pos + align - 1) / align * align;
    if (data_start > size) data_start = size;
    for (int k = 0; k < g->n_tensors; k++) {
        TensorRef *t = &g->tensors[k];
        if (offsets[k] > size - data_start || t->nbytes > size - data_start - offsets[k]) {
            ld_set_error("%s: tensor '%s': data (offset %llu, %zu bytes) runs past the end of the file", path, t->name,
                         (unsigned long long)offsets[k], t->nbytes);
            goto fail_off;
        }
        t->data = buf + data_start + offsets[k];
    }
    free(offsets);
    return 0;
fail_off:
    free(offsets);
fail:
    free_tables(g);
    return -1;
}

int gguf_open(const char *path, Gguf *out) {
    memset(out, 0, sizeof *out);
    if (ld_map_file(path, &out->map)) return -1;
    if (gguf_parse(out->map.data, out->map.size, path, out)) {
        ld_unmap_file(&out->map);
        return -1;
    }
    out->path = ld_xstrdup(path);
    return 0;
}

const GgufKv *gguf_get(const Gguf *g, const char *key) {
    for (int i = 0; i < g->n_kvs; i++)
        if (!strcmp(g->kvs[i].key, key)) return &g->kvs[i];
    return NULL;
}

int64_t gguf_get_int(const Gguf *g, const char *key, int64_t def) {
    const GgufKv *kv = gguf_get(g, key);
    if (!kv) return def;
    switch (kv->type) {
        case GGUF_U8:
        case GGUF_U16:
        case GGUF_U32:
        case GGUF_U64:
        case GGUF_BOOL:
            return (int64_t)kv->v.u;
        case GGUF_I8:
        case GGUF_I16:
        case GGUF_I32:
        case GGUF_I64:
            return kv->v.i;
        default:
            return def;
    }
}

double gguf_get_float(const Gguf *g, const char *key, double def) {
    const GgufKv *kv = gguf_get(g, key);
    if (!kv) return def;
    if (kv->type == GGUF_F32 || kv->type == GGUF_F64) return kv->v.f;
    return (double)gguf_get_int(g, key, (int64_t)def);
}

char *gguf_get_str(const Gguf *g, const char *key) {
    const GgufKv *kv = gguf_get(g, key);
    return kv && kv->type == GGUF_STRING ? dup_str(kv->v.s) : NULL;
}

const TensorRef *gguf_find(const Gguf *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

double gguf_arr_num(const GgufKv *kv, uint64_t i) {
    const uint8_t *p = kv->arr + i * (uint64_t)k_scalar_size[kv->arr_type];
    switch (kv->arr_type) {
        case GGUF_U8:
        case GGUF_BOOL:
            return p[0];
        case GGUF_I8:
            return (int8_t)p[0];
        case GGUF_U16: {
            uint16_t x;
            memcpy(&x, p, 2);
            return x;
        }
        case GGUF_I16: {
            int16_t x;
            memcpy(&x, p, 2);
            return x;
        }
        case GGUF_U32: {
            uint32_t x;
            memcpy(&x, p, 4);
            return x;
        }
        case GGUF_I32: {
            int32_t x;
            memcpy(&x, p, 4);
            return x;
        }
        case GGUF_F32: {
            float x;
            memcpy(&x, p, 4);
            return x;
        }
        case GGUF_U64: {
            uint64_t x;
            memcpy(&x, p, 8);
            return (double)x;
        }
        case GGUF_I64: {
            int64_t x;
            memcpy(&x, p, 8);
            return (double)x;
        }
        case GGUF_F64: {
            double x;
            memcpy(&x, p, 8);
            return x;
        }
        default:
            return 0;
    }
}
