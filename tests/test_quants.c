// The SIMD row dequantisers against the scalar block reference, every format, on random blocks; the encoders
// (exports) against exact rounding: F16 and BF16 to nearest even, Q8_0 within half a step of its scale.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "test_util.h"

static uint16_t f16_bits(float f) {  // small normal values only (|f| in [2^-10, 2^2))
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, exp = ((u >> 23) & 0xff) - 127 + 15, mant = (u >> 13) & 0x3ff;
    return (uint16_t)(sign | (exp << 10) | mant);
}

int main(void) {
    LdDtype types[] = {LD_F16, LD_BF16, LD_Q8_0, LD_Q4_0, LD_Q4_1, LD_Q5_0, LD_Q5_1, LD_Q4_K, LD_Q5_K, LD_Q6_K};
    srand(7);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        LdDtype t = types[k];
        int K = 1024;
        size_t nbytes = ld_dtype_nbytes(t, (uint64_t)K);
        uint8_t *raw = malloc(nbytes);
        for (size_t i = 0; i < nbytes; i++) raw[i] = (uint8_t)rand();
        // scale fields must be finite halves: rewrite them per format
        int bb = ld_dtype_block_bytes(t), nb = (int)(nbytes / (size_t)bb);
        for (int i = 0; i < nb; i++) {
            uint8_t *b = raw + (size_t)i * bb;
            uint16_t d = f16_bits(0.01f + (float)rand() / RAND_MAX * 0.1f), m = f16_bits(-0.05f - (float)rand() / RAND_MAX * 0.1f);
            if (t == LD_Q6_K)
                memcpy(b + 208, &d, 2);
            else if (t != LD_F16 && t != LD_BF16) {
                memcpy(b, &d, 2);
                if (t == LD_Q4_1 || t == LD_Q5_1 || t == LD_Q4_K || t == LD_Q5_K) memcpy(b + 2, &m, 2);
            }
        }
        if (t == LD_F16 || t == LD_BF16)
            for (int i = 0; i < K; i++) {
                uint16_t h = t == LD_F16 ? f16_bits(((float)rand() / RAND_MAX - 0.5f) * 3) : (uint16_t)(f16_bits(1.0f) ^ rand());
                if (t == LD_BF16) {
                    float f = ((float)rand() / RAND_MAX - 0.5f) * 4;
                    uint32_t u;
                    memcpy(&u, &f, 4);
                    h = (uint16_t)(u >> 16);
                }
                memcpy(raw + 2 * i, &h, 2);
            }
        float *ref = malloc(sizeof(float) * K), *got = malloc(sizeof(float) * K);
        ld_dequantize(t, raw, ref, (size_t)K);
        for (int i = 0; i < K; i++) got[i] = NAN;  // poisoned: every element must be written
        ld_dequantize_row(t, raw, got, K);
        double worst = 0;
        for (int i = 0; i < K; i++) {
            double e = fabs((double)got[i] - ref[i]) / (fabs(ref[i]) + 1e-6);
            if (!(e <= worst)) worst = e;  // NaN propagates as a failure
        }
        printf("%-5s row dequantisation vs reference: max rel diff %.2e\n", ld_dtype_name(t), worst);
        CHECK(worst < 1e-6, "%s: SIMD row dequantisation differs from the reference (%.3e)", ld_dtype_name(t), worst);
        free(raw), free(ref), free(got);
    }
    // F16: every half bit pattern's value and the midpoints between neighbours (ties to even) round as exact
    // arithmetic says; the two ends of each interval are the only candidates
    int bad16 = 0;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float v = ld_f16_to_f32((uint16_t)h), next = ld_f16_to_f32((uint16_t)(h + 1));
        bad16 += ld_f32_to_f16(v) != h || ld_f32_to_f16(-v) != (h | 0x8000);
        if (h + 1 < 0x7c00) {
            float mid = (float)(((double)v + next) / 2);  // exact in fp32 (one more mantissa bit than f16 needs)
            uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            bad16 += ld_f32_to_f16(mid) != want;
            bad16 += ld_f32_to_f16(nextafterf(mid, 0)) != h || ld_f32_to_f16(nextafterf(mid, INFINITY)) != h + 1;
        }
    }
    bad16 += ld_f32_to_f16(70000.0f) != 0x7c00 || ld_f32_to_f16(INFINITY) != 0x7c00 || (ld_f32_to_f16(NAN) & 0x7fff) <= 0x7c00;
    printf("F16 encoding: %d of %d values and midpoints misrounded\n", bad16, 4 * 0x7c00);
    CHECK(bad16 == 0, "f32 -> f16 misrounds %d values", bad16);
    int bad_bf = 0;  // bf16: the midpoint between 1.0 and its successor goes to even (1.0), just above it goes up
    bad_bf +=
        ld_f32_to_bf16(1.0f) != 0x3f80 || ld_f32_to_bf16(1.00390625f) != 0x3f80 || ld_f32_to_bf16(nextafterf(1.00390625f, 2.0f)) != 0x3f81;
    bad_bf += ld_f32_to_bf16(1.01171875f) != 0x3f82 || (ld_f32_to_bf16(NAN) & 0x7fff) <= 0x7f80;
    CHECK(bad_bf == 0, "f32 -> bf16 rounding wrong (%d cases)", bad_bf);
    // Q8_0: scale d = max|x|/127 stored as f16 (ggml's reference): every element comes back within half a step
    // plus what rounding d to f16 costs at the largest quant (tiny blocks have subnormal, coarse scales)
    float x[256], back[256];
    uint8_t q[8 * 34];
    for (int i = 0; i < 256; i++) x[i] = ((float)rand() / RAND_MAX - 0.5f) * (i < 32 ? 1e-3f : 6.0f);
    x[40] = 0;
    CHECK(ld_quantize(LD_Q8_0, x, q, 256) == 0, "Q8_0 encode");
    ld_dequantize(LD_Q8_0, q, back, 256);
    double worst_q = 0;
    for (int b = 0; b < 8; b++) {
        uint16_t dh;
        memcpy(&dh, q + b * 34, 2);
        double d = ld_f16_to_f32(dh), amax = 0;
        for (int i = 0; i < 32; i++) amax = fmax(amax, fabs(x[b * 32 + i]));
        double slack = 127 * fabs(amax / 127 - d) / d;
        for (int i = 0; i < 32; i++) {
            double e = fabs((double)back[b * 32 + i] - x[b * 32 + i]) / d - slack;
            if (!(e <= worst_q)) worst_q = e;
        }
    }
    printf("Q8_0 encoding: worst error %.3f of a step (beyond the f16 scale's own rounding)\n", worst_q);
    CHECK(worst_q <= 0.51, "Q8_0 round trip off by %.3f steps", worst_q);
    return test_finish("test_quants");
}
