// The CUDA emulator stands in for <mma.h>: the warp-level matrix API (nvcuda::wmma) in the one shape the kernels
// use, 16×16×16 with bf16 inputs and fp32 accumulators. A fragment's layout across a warp's lanes is opaque in CUDA,
// so here every lane holds the whole tile: code that treats x[] element by element (the same op on each) means
// the same on both. Each call does its work and then waits for the warp's other lanes, so a lane that reads shared
// memory before the others wrote it (a missing __syncwarp) reads stale data here too, and a call not reached by
// every lane of the warp deadlocks. Pointers and strides are checked as the hardware requires them: 256-bit
// aligned, the stride a multiple of 16 bytes.
#pragma once
#include <stdio.h>
#include <stdlib.h>

#include <type_traits>

#include "emu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K>
struct emu_shape;  // the tile's rows and columns for each use
template <int M, int N, int K>
struct emu_shape<matrix_a, M, N, K> {
    enum { rows = M, cols = K };
};
template <int M, int N, int K>
struct emu_shape<matrix_b, M, N, K> {
    enum { rows = K, cols = N };
};
template <int M, int N, int K>
struct emu_shape<accumulator, M, N, K> {
    enum { rows = M, cols = N };
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulator has the 16x16x16 shape only");
    enum { rows = emu_shape<Use, M, N, K>::rows, cols = emu_shape<Use, M, N, K>::cols, num_elements = rows * cols };
    T x[num_elements];  // row-major, whatever the layout in memory
};

inline float emu_value(float v) { return v; }
inline float emu_value(__nv_bfloat16 v) { return __bfloat162float(v); }
inline void emu_assign(float *d, float v) { *d = v; }
inline void emu_assign(__nv_bfloat16 *d, float v) { *d = __float2bfloat16_rn(v); }

inline void emu_check(const void *p, unsigned ldm, size_t elem) {
    if ((uintptr_t)p % 32 || (ldm * elem) % 16) {
        fprintf(stderr, "cuda emulator: wmma pointer %p not 256-bit aligned or stride %u not a multiple of 16 bytes\n", p, ldm);
        abort();
    }
}

inline void emu_warp_meet() { __syncwarp(); }

template <typename Use, typename T, typename L>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    emu_check(p, ldm, sizeof(T));
    const bool col = std::is_same<L, col_major>::value;
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++) f.x[r * f.cols + c] = col ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
    emu_warp_meet();
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm, layout_t layout) {
    emu_check(p, ldm, sizeof(float));
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
    emu_warp_meet();
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t layout) {
    emu_check(p, ldm, sizeof(float));
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) (layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c]) = f.x[r * 16 + c];
    emu_warp_meet();
}

template <typename Use, typename T, typename L>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, float v) {
    for (int i = 0; i < f.num_elements; i++) emu_assign(&f.x[i], v);
}

// d = a·b + c, the products of the inputs summed in fp32
template <typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, T, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
    float out[256];
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float s = c.x[m * 16 + n];
            for (int k = 0; k < 16; k++) s += emu_value(a.x[m * 16 + k]) * emu_value(b.x[k * 16 + n]);
            out[m * 16 + n] = s;
        }
    for (int i = 0; i < 256; i++) d.x[i] = out[i];
    emu_warp_meet();
}

}  // namespace wmma
}  // namespace nvcuda
