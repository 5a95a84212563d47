// defines: fp32 <-> bf16 conversion of device buffers (kernels/cuda/convert.cu; each returns 0, or -1 with
// kc_last_error()).
#pragma once
#include <stddef.h>

// n values between fp32 and bf16 (dst/src: n bf16 values), rounding to nearest even as dtype.h ld_f32_to_bf16
int kc_to_bf16(void *dst, const float *src, size_t n);
int kc_from_bf16(float *dst, const void *src, size_t n);
