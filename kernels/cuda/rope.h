// defines: rotary position embedding and its backward (kernels.h k_rope) (kernels/cuda/rope.cu; each returns 0, or -1
// with kc_last_error()).
#pragma once
#include <stddef.h>

int kc_rope(float *x, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim);
int kc_rope_backward(float *dx, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim);
