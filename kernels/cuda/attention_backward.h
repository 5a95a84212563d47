// defines: the packed attention's backward from its out and lse (kernels.h k_attention_backward)
// (kernels/cuda/attention_backward.cu; each returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>
#include <stdint.h>

// Backward of kc_attention_packed given its out and lse: dq, dk and dv written whole. kv_lo and kv_hi must not
// decrease along the batch (causal packed records, windows).
int kc_attention_backward(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k,
                          const float *v, const float *out, const float *lse, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv,
                          int hd, float scale, float softcap);
