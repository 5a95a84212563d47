// defines: the LoRA low-rank path of the linears sharing one input, fused into one launch each way for calls of
// few tokens (kernels/cuda/lora_lowrank.cu; each returns 0, or -1 with kc_last_error()). lora_linear.cu runs it
// where kc_lowrank_fits, cuBLAS's products elsewhere.
#pragma once

// Where the fused kernels serve: at most KC_LOWRANK_MAX_TOKENS tokens (decode steps, small micro-batches, where
// a step's cost is its launches; above, cuBLAS's products amortise theirs), at most KC_LOWRANK_MAX_JOBS adapted
// linears, and m·r at most KC_LOWRANK_MAX_STACK (the stack's rows of a block's tokens sit in shared memory).
#define KC_LOWRANK_MAX_TOKENS 256
#define KC_LOWRANK_MAX_JOBS 4
#define KC_LOWRANK_MAX_STACK 256
int kc_lowrank_fits(int T, int m, int r);

// One adapted linear: its output y[T,out] (forward) or its gradient dy[T,out] (backward), and its B[out,r]; going
// back, dB[out,r] its gradient (NULL: not wanted).
typedef struct {
    float *y;
    const float *dy, *B;
    float *dB;
    int out;
} LowrankJob;

// axT[m·r,T] = A[m·r,in]·x[T,in]ᵀ (the stacked shrink), then each job's y += s·ax_j·B_jᵀ (ax_j: rows j·r.. of axT,
// transposed).
int kc_lowrank_forward(const LowrankJob *jobs, int m, float *axT, const float *x, const float *A, float s, int T, int in, int r);
// dyBT[m·r,T]: job j's rows are (s·dy_j·B_j)ᵀ; then dx[T,in] (NULL: not wanted) = dyBTᵀ·A, added to dx when
// dx_add, else written.
int kc_lowrank_backward(const LowrankJob *jobs, int m, float *dyBT, float *dx, int dx_add, const float *A, float s, int T, int in,
                        int r);
// The adapters' weight gradients, one launch for the stack: each job's dB += s·dy_jᵀ·ax_j (ax_j: rows j·r.. of
// axT) and dA[m·r,in] (NULL: not wanted) += dyBT·x, each sum over the tokens in order.
int kc_lowrank_grads(const LowrankJob *jobs, int m, float *dA, const float *axT, const float *dyBT, const float *x, float s, int T, int in,
                     int r);
