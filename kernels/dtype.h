// defines: the element types of model files (safetensors dtypes and GGUF/ggml types in one enum) and the
// dequantisation of a run of elements to fp32.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

// One buffer of a batch converted between fp32 and bf16 by one op: n values from src to dst.
typedef struct {
    void *dst;
    const void *src;
    size_t n;
} LdConvertRun;

typedef enum {
    LD_F32,
    LD_F16,
    LD_BF16,
    LD_F64,
    LD_I64,
    LD_I32,
    LD_I16,
    LD_I8,
    LD_U8,
    LD_BOOL,
    LD_Q4_0,
    LD_Q4_1,
    LD_Q5_0,
    LD_Q5_1,
    LD_Q8_0,
    LD_Q4_K,
    LD_Q5_K,
    LD_Q6_K,
    LD_DTYPE_COUNT
} LdDtype;

const char *ld_dtype_name(LdDtype t);
// Elements per block and bytes per block (1 and the element size for plain types).
int ld_dtype_block_elems(LdDtype t);
int ld_dtype_block_bytes(LdDtype t);
// Bytes for n elements, or 0 when n is not a whole number of blocks / overflows.
size_t ld_dtype_nbytes(LdDtype t, uint64_t n);
// True for the types a model weight may have (float or supported quantised).
int ld_dtype_is_weight(LdDtype t);
// Dequantise n elements (a whole number of blocks) from src to dst.
void ld_dequantize(LdDtype t, const void *src, float *dst, size_t n);

// Half-precision scalars.
static inline float ld_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float ld_f16_to_f32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) mant <<= 1, exp--;
            u = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000 | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

// fp32 to half precision, rounding to nearest even (as ggml and torch do); NaN stays NaN.
static inline uint16_t ld_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}
uint16_t ld_f32_to_f16(float f);

// Encodes n elements (a whole number of blocks) of src as type t: F32, F16, BF16 or Q8_0 (ggml's reference
// rounding). Returns -1 for a type it cannot write.
int ld_quantize(LdDtype t, const float *src, void *dst, size_t n);

// y[0..K) = the dequantised row at src (K a whole number of blocks); SIMD where the CPU has it.
void ld_dequantize_row(LdDtype t, const void *src, float *y, int K);
