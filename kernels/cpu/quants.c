// Dequantisation of the ggml block formats, written from the GGUF/ggml format description: each block
// stores fp16 scale(s) and packed integer quants; K-quants group 256 elements with 6-bit sub-block scales.
// Encoding (for exports) covers F16, BF16 and Q8_0.
#include <math.h>
#include <string.h>

#include "../dtype.h"

static const struct {
    const char *name;
    int block_elems, block_bytes;
} k_types[LD_DTYPE_COUNT] = {
    [LD_F32] = {"F32", 1, 4},       [LD_F16] = {"F16", 1, 2},       [LD_BF16] = {"BF16", 1, 2},   [LD_F64] = {"F64", 1, 8},
    [LD_I64] = {"I64", 1, 8},       [LD_I32] = {"I32", 1, 4},       [LD_I16] = {"I16", 1, 2},     [LD_I8] = {"I8", 1, 1},
    [LD_U8] = {"U8", 1, 1},         [LD_BOOL] = {"BOOL", 1, 1},     [LD_Q4_0] = {"Q4_0", 32, 18}, [LD_Q4_1] = {"Q4_1", 32, 20},
    [LD_Q5_0] = {"Q5_0", 32, 22},   [LD_Q5_1] = {"Q5_1", 32, 24},   [LD_Q8_0] = {"Q8_0", 32, 34}, [LD_Q4_K] = {"Q4_K", 256, 144},
    [LD_Q5_K] = {"Q5_K", 256, 176}, [LD_Q6_K] = {"Q6_K", 256, 210},
};

const char *ld_dtype_name(LdDtype t) { return t < LD_DTYPE_COUNT ? k_types[t].name : "?"; }
int ld_dtype_block_elems(LdDtype t) { return k_types[t].block_elems; }
int ld_dtype_block_bytes(LdDtype t) { return k_types[t].block_bytes; }

size_t ld_dtype_nbytes(LdDtype t, uint64_t n) {
    uint64_t be = (uint64_t)k_types[t].block_elems, bb = (uint64_t)k_types[t].block_bytes;
    if (n % be) return 0;
    uint64_t blocks = n / be;
    if (blocks > (UINT64_MAX / bb)) return 0;
    return (size_t)(blocks * bb);
}

int ld_dtype_is_weight(LdDtype t) { return t == LD_F32 || t == LD_F16 || t == LD_BF16 || (t >= LD_Q4_0 && t <= LD_Q6_K); }

static float rd_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return ld_f16_to_f32(h);
}

static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void deq_q4_0(const uint8_t *b, float *y) {  // d | qs[16]
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = ((qs[j] & 0xF) - 8) * d;
        y[j + 16] = ((qs[j] >> 4) - 8) * d;
    }
}
static void deq_q4_1(const uint8_t *b, float *y) {  // d | m | qs[16]
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (qs[j] & 0xF) * d + m;
        y[j + 16] = (qs[j] >> 4) * d + m;
    }
}
static void deq_q5(const uint8_t *b, float *y, int has_min) {  // d | [m] | qh[4] | qs[16]
    float d = rd_f16(b), m = has_min ? rd_f16(b + 2) : 0.0f;
    const uint8_t *p = b + (has_min ? 4 : 2);
    uint32_t qh;
    memcpy(&qh, p, 4);
    const uint8_t *qs = p + 4;
    for (int j = 0; j < 16; j++) {
        int xh0 = ((qh >> j) << 4) & 0x10, xh1 = (qh >> (j + 12)) & 0x10;
        int x0 = (qs[j] & 0xF) | xh0, x1 = (qs[j] >> 4) | xh1;
        if (has_min) {
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        } else {
            y[j] = (x0 - 16) * d;
            y[j + 16] = (x1 - 16) * d;
        }
    }
}
static void deq_q8_0(const uint8_t *b, float *y) {  // d | qs[32] (int8)
    float d = rd_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
}
static void deq_q4_k(const uint8_t *b, float *y) {  // d | dmin | scales[12] | qs[128]
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *sc = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
        uint8_t s, m;
        scale_min_k4(is, sc, &s, &m);
        float d1 = d * s, m1 = dmin * m;
        scale_min_k4(is + 1, sc, &s, &m);
        float d2 = d * s, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
    }
}
static void deq_q5_k(const uint8_t *b, float *y) {  // d | dmin | scales[12] | qh[32] | qs[128]
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *ql = b + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
        uint8_t s, m;
        scale_min_k4(is, sc, &s, &m);
        float d1 = d * s, m1 = dmin * m;
        scale_min_k4(is + 1, sc, &s, &m);
        float d2 = d * s, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
}
static void deq_q6_k(const uint8_t *b, float *y) {  // ql[128] | qh[64] | scales[16] (int8) | d
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rd_f16(b + 208);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

void ld_dequantize(LdDtype t, const void *src, float *dst, size_t n) {
    const uint8_t *s = src;
    size_t be = (size_t)k_types[t].block_elems, bb = (size_t)k_types[t].block_bytes, nb = n / be;
    switch (t) {
        case LD_F32:
            memcpy(dst, src, n * 4);
            return;
        case LD_F16:
            for (size_t i = 0; i < n; i++) dst[i] = rd_f16(s + 2 * i);
            return;
        case LD_BF16:
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, s + 2 * i, 2);
                dst[i] = ld_bf16_to_f32(h);
            }
            return;
        default:
            break;
    }
#pragma omp parallel for if (nb > 4096)
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *b = s + i * bb;
        float *y = dst + i * be;
        switch (t) {
            case LD_Q4_0:
                deq_q4_0(b, y);
                break;
            case LD_Q4_1:
                deq_q4_1(b, y);
                break;
            case LD_Q5_0:
                deq_q5(b, y, 0);
                break;
            case LD_Q5_1:
                deq_q5(b, y, 1);
                break;
            case LD_Q8_0:
                deq_q8_0(b, y);
                break;
            case LD_Q4_K:
                deq_q4_k(b, y);
                break;
            case LD_Q5_K:
                deq_q5_k(b, y);
                break;
            case LD_Q6_K:
                deq_q6_k(b, y);
                break;
            default:
                break;
        }
    }
}

// ---- row dequantisation with AVX2 (the scalar block code above stays the reference) --------------------
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

// 8 bytes -> 8 floats
static inline __m256 u8x8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 i8x8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// 32 bytes of values (signed) scaled: y[0..32) = v * d (+ m)
static inline void store32_i8(float *y, __m256i v, __m256 d) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(i8x8_ps(lo), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(i8x8_ps(_mm_srli_si128(lo, 8)), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(i8x8_ps(hi), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(i8x8_ps(_mm_srli_si128(hi, 8)), d));
}

// 32 bytes of unsigned values: y = v * d + m
static inline void store32_u8_fma(float *y, __m256i v, __m256 d, __m256 m) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_fmadd_ps(u8x8_ps(lo), d, m));
    _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(u8x8_ps(_mm_srli_si128(lo, 8)), d, m));
    _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(u8x8_ps(hi), d, m));
    _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(u8x8_ps(_mm_srli_si128(hi, 8)), d, m));
}

// 16 packed nibble bytes -> 32 bytes: low nibbles first, then high nibbles (the ggml element order)
static inline __m256i nibbles_lo_hi(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

// 32 bits -> 32 bytes, 0xFF where the bit is set
static inline __m256i bits_to_bytes(uint32_t x) {
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

static void row_q8_0(const uint8_t *b, float *y, int nb) {
    for (int i = 0; i < nb; i++, b += 34, y += 32) store32_i8(y, _mm256_loadu_si256((const __m256i *)(b + 2)), _mm256_set1_ps(rd_f16(b)));
}
static void row_q4_0(const uint8_t *b, float *y, int nb) {
    for (int i = 0; i < nb; i++, b += 18, y += 32)
        store32_i8(y, _mm256_sub_epi8(nibbles_lo_hi(b + 2), _mm256_set1_epi8(8)), _mm256_set1_ps(rd_f16(b)));
}
static void row_q4_1(const uint8_t *b, float *y, int nb) {
    for (int i = 0; i < nb; i++, b += 20, y += 32)
        store32_u8_fma(y, nibbles_lo_hi(b + 4), _mm256_set1_ps(rd_f16(b)), _mm256_set1_ps(rd_f16(b + 2)));
}
static void row_q5(const uint8_t *b, float *y, int nb, int has_min) {
    int bb = has_min ? 24 : 22, off = has_min ? 4 : 2;
    for (int i = 0; i < nb; i++, b += bb, y += 32) {
        uint32_t qh;
        memcpy(&qh, b + off, 4);
        __m256i hi = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
        __m256i q = _mm256_or_si256(nibbles_lo_hi(b + off + 4), hi);
        if (has_min)
            store32_u8_fma(y, q, _mm256_set1_ps(rd_f16(b)), _mm256_set1_ps(rd_f16(b + 2)));
        else
            store32_i8(y, _mm256_sub_epi8(q, _mm256_set1_epi8(16)), _mm256_set1_ps(rd_f16(b)));
    }
}
static void row_q4_k(const uint8_t *b, float *y, int nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int i = 0; i < nb; i++, b += 144) {
        float d = rd_f16(b), dmin = rd_f16(b + 2);
        const uint8_t *sc = b + 4, *q = b + 16;
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32, y += 64) {
            uint8_t s, m;
            scale_min_k4(is, sc, &s, &m);
            __m256 d1 = _mm256_set1_ps(d * s), m1 = _mm256_set1_ps(-(dmin * m));
            scale_min_k4(is + 1, sc, &s, &m);
            __m256 d2 = _mm256_set1_ps(d * s), m2 = _mm256_set1_ps(-(dmin * m));
            __m256i v = _mm256_loadu_si256((const __m256i *)q);
            store32_u8_fma(y, _mm256_and_si256(v, m4), d1, m1);
            store32_u8_fma(y + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), d2, m2);
        }
    }
}
static void row_q6_k(const uint8_t *b, float *y, int nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    for (int i = 0; i < nb; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = rd_f16(b + 208);
        for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4)),
            };
            for (int g = 0; g < 4; g++) {  // group g covers y[32g .. 32g+32): scales sc[2g] (first 16), sc[2g+1]
                __m256i v = _mm256_sub_epi8(q[g], k32);
                __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
                __m256 s0 = _mm256_set1_ps(d * sc[2 * g]), s1 = _mm256_set1_ps(d * sc[2 * g + 1]);
                float *o = y + 32 * g;
                _mm256_storeu_ps(o, _mm256_mul_ps(i8x8_ps(lo), s0));
                _mm256_storeu_ps(o + 8, _mm256_mul_ps(i8x8_ps(_mm_srli_si128(lo, 8)), s0));
                _mm256_storeu_ps(o + 16, _mm256_mul_ps(i8x8_ps(hi), s1));
                _mm256_storeu_ps(o + 24, _mm256_mul_ps(i8x8_ps(_mm_srli_si128(hi, 8)), s1));
            }
        }
    }
}
static void row_bf16(const uint8_t *b, float *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + 2 * i)));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        y[i] = ld_bf16_to_f32(h);
    }
}
static void row_f16(const uint8_t *b, float *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 2 * i))));
    for (; i < n; i++) y[i] = rd_f16(b + 2 * i);
}
#endif

void ld_dequantize_row(LdDtype t, const void *src, float *y, int K) {
#if defined(__AVX2__) && defined(__FMA__)
    const uint8_t *b = src;
    switch (t) {
        case LD_F32:
            memcpy(y, src, sizeof(float) * (size_t)K);
            return;
        case LD_BF16:
            row_bf16(b, y, K);
            return;
        case LD_F16:
            row_f16(b, y, K);
            return;
        case LD_Q8_0:
            row_q8_0(b, y, K / 32);
            return;
        case LD_Q4_0:
            row_q4_0(b, y, K / 32);
            return;
        case LD_Q4_1:
            row_q4_1(b, y, K / 32);
            return;
        case LD_Q5_0:
            row_q5(b, y, K / 32, 0);
            return;
        case LD_Q5_1:
            row_q5(b, y, K / 32, 1);
            return;
        case LD_Q4_K:
            row_q4_k(b, y, K / 256);
            return;
        case LD_Q6_K:
            row_q6_k(b, y, K / 256);
            return;
        default:
            break;
    }
#endif
    ld_dequantize(t, src, y, (size_t)K);  // the reference block code (a row is too small to be threaded)
}

// ---- encoding (exports) ---------------------------------------------------------------------------------

uint16_t ld_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, exp = (u >> 23) & 0xff, mant = u & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));  // inf / NaN
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);  // overflow: inf
    if (e <= 0) {  // subnormal half (or zero)
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13), rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;  // a carry into the exponent is still right
    return (uint16_t)(sign | half);
}

int ld_quantize(LdDtype t, const float *src, void *dst, size_t n) {
    uint8_t *o = dst;
    switch (t) {
        case LD_F32:
            memcpy(dst, src, n * sizeof(float));
            return 0;
        case LD_F16:
            for (size_t i = 0; i < n; i++) {
                uint16_t h = ld_f32_to_f16(src[i]);
                memcpy(o + 2 * i, &h, 2);
            }
            return 0;
        case LD_BF16:
            for (size_t i = 0; i < n; i++) {
                uint16_t h = ld_f32_to_bf16(src[i]);
                memcpy(o + 2 * i, &h, 2);
            }
            return 0;
        case LD_Q8_0:  // per 32: d = max|x| / 127 (stored f16), q = round(x / d)
            for (size_t b = 0; b < n / 32; b++, o += 34) {
                const float *x = src + b * 32;
                float amax = 0;
                for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
                float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
                uint16_t dh = ld_f32_to_f16(d);
                memcpy(o, &dh, 2);
                for (int i = 0; i < 32; i++) o[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
            }
            return 0;
        default:
            return -1;
    }
}
