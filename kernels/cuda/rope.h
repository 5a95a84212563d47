// defines: rotary position embedding and its backward (kernels.h k_rope) (kernels/cuda/rope.cu; each returns 0, or -1
// with kc_last_error()).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kv_rows.h"

// kernels.h k_rope_kv_write: q rotated, and the rotated keys and the values into a KV cache (fp32 or bf16), one launch
int kc_rope_kv_write(KvRows kv, float *q, const float *k, const float *v, const int *rows, const int *pos, const float *inv_freq, int n,
                     int Hq, int Hkv, int head_dim);
int kc_rope(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim);
int kc_rope_backward(float *dq, float *dk, uint16_t *dq16, uint16_t *dk16, const int *pos, const float *inv_freq, int T, int Hq, int Hkv,
                     int head_dim);
