// defines: a memory-mapped GGUF file (v2, v3): metadata key/values, tensor infos and the aligned data.
#pragma once
#include "tensor.h"
#include "util.h"

typedef enum {
    GGUF_U8 = 0,
    GGUF_I8,
    GGUF_U16,
    GGUF_I16,
    GGUF_U32,
    GGUF_I32,
    GGUF_F32,
    GGUF_BOOL,
    GGUF_STRING,
    GGUF_ARRAY,
    GGUF_U64,
    GGUF_I64,
    GGUF_F64,
    GGUF_TYPE_COUNT
} GgufType;

typedef struct {
    const char *ptr;  // inside the map, not NUL-terminated
    uint64_t len;
} GgufStr;

typedef struct {
    char *key;
    GgufType type;
    GgufType arr_type;  // element type when type == GGUF_ARRAY
    uint64_t arr_len;
    union {
        uint64_t u;
        int64_t i;
        double f;
        GgufStr s;
    } v;  // scalar value (integers widened, floats as double)
    const uint8_t *arr;  // array payload inside the map (numbers: packed little-endian)
    GgufStr *arr_strs;  // array of strings, decoded
} GgufKv;

typedef struct Gguf {
    char *path;
    MappedFile map;
    uint32_t version;
    GgufKv *kvs;
    int n_kvs;
    TensorRef *tensors;
    int n_tensors;
} Gguf;

int gguf_open(const char *path, Gguf *out);
int gguf_parse(const uint8_t *buf, size_t size, const char *path, Gguf *out);  // fuzz entry
void gguf_close(Gguf *g);

const GgufKv *gguf_get(const Gguf *g, const char *key);
// Typed getters: return def when the key is absent; a present key of the wrong type is also def.
int64_t gguf_get_int(const Gguf *g, const char *key, int64_t def);
double gguf_get_float(const Gguf *g, const char *key, double def);
char *gguf_get_str(const Gguf *g, const char *key);  // heap copy or NULL
const TensorRef *gguf_find(const Gguf *g, const char *name);
// Array element i as a number (integer or float arrays).
double gguf_arr_num(const GgufKv *kv, uint64_t i);

// ---- writing ----------------------------------------------------------------------------------------------

typedef struct {
    const char *name;
    LdDtype type;  // F32, F16, BF16 or Q8_0
    int n_dims;
    int64_t shape[LD_MAX_DIMS];  // outermost first, as TensorRef
} GgufOutTensor;

// ggml's type id of t, or -1.
int gguf_type_id(LdDtype t);
// Writes a GGUF v3 file atomically: every metadata key of `meta` except general.file_type and general.alignment
// (32 is used), then general.file_type = file_type, then the tensors, each filled on demand by produce(i, dst)
// with its bytes in its type (so a model larger than memory is written one tensor at a time).
int gguf_write(const char *path, const Gguf *meta, uint32_t file_type, const GgufOutTensor *t, int n,
               int (*produce)(int i, void *dst, void *ctx), void *ctx);
