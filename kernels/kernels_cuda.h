// defines: the CUDA versions of the ops in kernels.h, same contracts (shapes, layouts, accumulation), on device
// pointers, launched on the default stream; each op's entry points are declared in kernels/cuda/<op>.h beside its
// .cu, and this header includes them all. Ops compute in fp32, gradients and optimizer state are fp32; base
// weights (the linears' W, the embedding table) may be fp32 or bf16 (mixed precision: bf16 GEMM inputs, fp32
// accumulation) — their own gradients (full fine-tuning) need fp32 ones — and kc_to_bf16 / kc_from_bf16 let a
// caller keep activations in bf16 between uses. Each returns 0,
// or -1 with kc_last_error() naming the kernel and CUDA's reason (a failed launch is never silent).
#pragma once

#include "cuda/activations.h"
#include "cuda/adamw.h"
#include "cuda/attention.h"
#include "cuda/attention_backward.h"
#include "cuda/collective.h"
#include "cuda/convert.h"
#include "cuda/cross_entropy.h"
#include "cuda/elementwise.h"
#include "cuda/embedding.h"
#include "cuda/lora_linear.h"
#include "cuda/lora_lowrank.h"
#include "cuda/memory.h"
#include "cuda/rmsnorm.h"
#include "cuda/rope.h"
#include "cuda/sample.h"
