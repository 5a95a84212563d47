// defines: attention over a KV cache and over a packed batch (kernels.h k_attention) (kernels/cuda/attention.cu; each
// returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kv_rows.h"

// Attention in the flash manner: each (token, head) streams its key range [kv_lo, kv_hi] (rows of k/v starting
// at row kv_base[t] of kv, laid out [rows, Hkv*hd], fp32 or bf16, virtual rows where kv is paged) through shared memory in tiles with an online softmax; no score
// matrix is stored. GQA (Hq a multiple of Hkv), head_dim up to 256, soft-cap (> 0), any per-token range (causal,
// sliding window, packed records, many sequences of a KV cache).
int kc_attention(float *out, uint16_t *out16, const float *q, KvRows kv, const int *kv_base, const int *kv_lo, const int *kv_hi, int T,
                 int Hq, int Hkv, int hd, float scale, float softcap);
// The same with the ranges as rows of k/v themselves (no kv_base): a packed training batch's own rows, or a
// prefill's rows of a KV cache. Blocks of 32 consecutive queries share each tile of 32 keys, and walk only the rows
// some of them sees (not those between two sequences' slots). lse[T, Hq] (may be NULL) gets each row's log-sum-exp.
// Where out16 is asked for (the output feeds a bf16 GEMM) and head_dim is 16, 32, 64, 128 or 256, the products run
// on tensor cores: kc_attention_packed_mma.
int kc_attention_packed(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_lo, const int *kv_hi, int T,
                        int Hq, int Hkv, int hd, float scale, float softcap);
// The same on tensor cores (attention_mma.cu): q, k, v and the softmax weights rounded to bf16, sums in fp32; within
// bf16's error of the fp32 kernel. Blocks of 64 queries, tiles of 32 keys. hd must pass kc_attention_packed_mma_fits.
int kc_attention_packed_mma_fits(int hd);
int kc_attention_packed_mma(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_lo, const int *kv_hi, int T,
                            int Hq, int Hkv, int hd, float scale, float softcap);
