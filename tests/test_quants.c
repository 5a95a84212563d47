// The SIMD row dequantisers against the scalar block reference, every format, on random blocks.
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
            if (t == LD_Q6_K) memcpy(b + 208, &d, 2);
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
    return test_finish("test_quants");
}
