#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "../kernels.h"

// OpenBLAS runs single-threaded here and the output columns are split across OpenMP threads instead: one
// thread pool for every op, so BLAS threads never spin against OpenMP threads on the same cores.
static void blas_single_threaded(void) {
    static int done;
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

// y[T, n0:n1] = alpha·x·w[n0:n1]ᵀ + beta·y: one thread's share of the output columns
static void matmul_cols(float *y, const float *x, const float *w, float alpha, float beta, int T, int K, int N, int n0, int n1) {
    if (T == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n1 - n0, K, alpha, w + (size_t)n0 * K, K, x, 1, beta, y + n0, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n1 - n0, K, alpha, x, K, w + (size_t)n0 * K, K, beta, y + n0, N);
}

// The output columns split across OpenMP threads (whole cache lines each); tiny products stay on one thread,
// where threading costs more than it saves.
static void matmul_threaded(float *y, const float *x, const float *w, const float *bias, float alpha, float beta, int T, int K, int N) {
    blas_single_threaded();
    int nt = omp_get_max_threads();
    if ((long)T * K * N < 1L << 18) nt = 1;
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        int chunk = (N + nth - 1) / nth;
        chunk = (chunk + 15) / 16 * 16;
        int n0 = tid * chunk, n1 = n0 + chunk > N ? N : n0 + chunk;
        if (n0 < n1) {
            matmul_cols(y, x, w, alpha, beta, T, K, N, n0, n1);
            if (bias)
                for (int t = 0; t < T; t++)
                    for (int n = n0; n < n1; n++) y[(size_t)t * N + n] += bias[n];
        }
    }
}

void k_matmul(float *y, const float *x, const float *w, const float *bias, int T, int K, int N) {
    matmul_threaded(y, x, w, bias, 1.0f, 0.0f, T, K, N);
}

void k_matmul_add(float *y, const float *x, const float *w, float alpha, int T, int K, int N) {
    matmul_threaded(y, x, w, NULL, alpha, 1.0f, T, K, N);
}

void k_matmul_q(float *y, const float *x, const void *w, LdDtype wt, const float *bias, int T, int K, int N) {
    if (wt == LD_F32) {
        k_matmul(y, x, w, bias, T, K, N);
        return;
    }
    blas_single_threaded();
    size_t row_bytes = ld_dtype_nbytes(wt, (uint64_t)K);
    // rows dequantised at a time: few for single tokens (the tile stays in L2), more when many tokens share
    // each tile so sgemm gets a wider product
    const int TILE_ROWS = T >= 8 ? 64 : 16;
    int n_tiles = (N + TILE_ROWS - 1) / TILE_ROWS;
#pragma omp parallel
    {
        float *tile = malloc(sizeof(float) * (size_t)TILE_ROWS * K);
#pragma omp for schedule(static)
        for (int tix = 0; tix < n_tiles; tix++) {
            int n0 = tix * TILE_ROWS, rows = N - n0 < TILE_ROWS ? N - n0 : TILE_ROWS;
            for (int r = 0; r < rows; r++)
                ld_dequantize_row(wt, (const uint8_t *)w + (size_t)(n0 + r) * row_bytes, tile + (size_t)r * K, K);
            if (T == 1)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, K, 1.0f, tile, K, x, 1, 0.0f, y + n0, 1);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, rows, K, 1.0f, x, K, tile, K, 0.0f, y + n0, N);
            if (bias)
                for (int t = 0; t < T; t++)
                    for (int n = n0; n < n0 + rows; n++) y[(size_t)t * N + n] += bias[n];
        }
        free(tile);
    }
}

void k_matmul_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x, const float *w, int T, int K, int N) {
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, K, N, 1.0f, dy, N, w, K, 0.0f, dx, K);
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, T, 1.0f, dy, N, x, K, 1.0f, dw, K);
    if (dbias)
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) dbias[n] += dy[(size_t)t * N + n];
}

void k_matmul_q_backward_x(float *dx, const float *dy, const void *w, LdDtype wt, int T, int K, int N) {
    if (wt == LD_F32 && omp_get_max_threads() == 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, K, N, 1.0f, dy, N, w, K, 1.0f, dx, K);
        return;
    }
    blas_single_threaded();
    size_t row_bytes = ld_dtype_nbytes(wt, (uint64_t)K);
    const int R = 64;
    int n_tiles = (N + R - 1) / R;
    // Threads take tiles of W's rows and sum their share of dx privately; the shares are added in thread order
    // afterwards, so results do not depend on timing.
    int nt = omp_get_max_threads();
    float **shares = calloc((size_t)nt, sizeof(float *));
#pragma omp parallel num_threads(nt)
    {
        float *tile = malloc(sizeof(float) * (size_t)R * K), *mine = calloc((size_t)T * K, sizeof(float));
        shares[omp_get_thread_num()] = mine;
#pragma omp for schedule(static)
        for (int ti = 0; ti < n_tiles; ti++) {  // mine += dy[:, n0:n0+R] · W[n0:n0+R, :]
            int n0 = ti * R, rows = N - n0 < R ? N - n0 : R;
            const float *src = tile;
            if (wt == LD_F32)
                src = (const float *)w + (size_t)n0 * K;
            else
                for (int r = 0; r < rows; r++)
                    ld_dequantize_row(wt, (const uint8_t *)w + (size_t)(n0 + r) * row_bytes, tile + (size_t)r * K, K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, K, rows, 1.0f, dy + n0, N, src, K, 1.0f, mine, K);
        }
        free(tile);
    }
    for (int th = 0; th < nt; th++) {
        if (!shares[th]) continue;
        for (size_t i = 0; i < (size_t)T * K; i++) dx[i] += shares[th][i];
        free(shares[th]);
    }
    free(shares);
}
