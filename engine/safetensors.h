// defines: a memory-mapped safetensors file: u64 LE header length, JSON header {name: {dtype, shape,
// data_offsets}} plus optional __metadata__, then the data.
#pragma once
#include "tensor.h"
#include "util.h"

typedef struct {
    char *path;
    MappedFile map;
    TensorRef *tensors;
    int n_tensors;
} SafeTensors;

int st_open(const char *path, SafeTensors *out);
// Parses an in-memory file image (the fuzz target's entry); `path` only names it in errors.
int st_parse(const uint8_t *buf, size_t size, const char *path, SafeTensors *out);
const TensorRef *st_find(const SafeTensors *st, const char *name);
// Opens an HF model directory's weights: model.safetensors, or each shard listed (once) in
// model.safetensors.index.json. On failure the files opened so far stay in *files for st_close.
int st_open_dir(const char *dir, SafeTensors **files, int *n_files);
void st_close(SafeTensors *st);

// Writing: fp32 tensors to a new safetensors file (header padded to 8 bytes, as HF writes it), atomically.
typedef struct {
    const char *name;
    const float *data;
    int n_dims;
    int64_t shape[LD_MAX_DIMS];
} StWriteTensor;
int st_write_f32(const char *path, const StWriteTensor *tensors, int n);
// The same with each tensor's data made on demand by produce(i, dst) (data unused), so a model larger than
// memory can be written one tensor at a time. A non-zero return from produce fails the write.
int st_write_f32_stream(const char *path, const StWriteTensor *tensors, int n, int (*produce)(int i, float *dst, void *ctx), void *ctx);
