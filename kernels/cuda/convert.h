// defines: fp32 <-> bf16 conversion of device buffers (kernels/cuda/convert.cu; each returns 0, or -1 with
// kc_last_error()).
#pragma once
#include <stddef.h>

#include "dtype.h"

// n values between fp32 and bf16 (dst/src: n bf16 values), rounding to nearest even as dtype.h ld_f32_to_bf16
int kc_to_bf16(void *dst, const float *src, size_t n);
int kc_from_bf16(float *dst, const void *src, size_t n);
// The same for each of count buffers, in one launch for up to KC_CONVERT_RUNS of them (the buffers a block keeps
// between the passes go together: a launch each would cost more than the bytes)
#define KC_CONVERT_RUNS 16
int kc_to_bf16_runs(const LdConvertRun *runs, int count);
int kc_from_bf16_runs(const LdConvertRun *runs, int count);
