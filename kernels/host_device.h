// defines: LD_HOST_DEVICE, the marker that lets one inline definition compile for the CPU reference and for a CUDA
// kernel (activation.h, dropout_mask.h).
#pragma once
#ifdef __CUDACC__
#define LD_HOST_DEVICE __host__ __device__
#else
#define LD_HOST_DEVICE
#endif
