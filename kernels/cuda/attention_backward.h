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
// Where dv16 is asked for (dv feeds a bf16 GEMM) and head_dim passes kc_attention_backward_mma_fits (16, 32, 64, 128, 256),
// the dq and dk/dv passes run on tensor cores: kc_attention_backward_mma, given delta[T, Hq] = Σ_d dout·out (q, k, v,
// dout and the weights rounded to bf16, sums in fp32; within bf16's error of the fp32 passes).
int kc_attention_backward_mma_fits(int hd);
int kc_attention_backward_mma(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k,
                              const float *v, const float *lse, const float *delta, const int *kv_lo, const int *kv_hi, int T, int Hq,
                              int Hkv, int hd, float scale, float softcap);
