// defines: what the C side may ask of the CUDA backend. Declared always; implemented in kernels/cuda/ when
// the build found nvcc, and by kernels/cpu/no_cuda.c (zero devices) when it did not.
#pragma once

// Number of usable CUDA devices: 0 when the build has no CUDA or the machine has no GPU/driver.
int ld_cuda_device_count(void);
// Writes a one-line description of device i ("NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB"); 0 on success.
int ld_cuda_device_describe(int i, char *buf, int cap);
// This thread's device from now on (a data-parallel rank's own GPU): 0, or -1 when there is no device i.
int ld_cuda_use_device(int i);
int ld_cuda_current_device(void);  // 0 without CUDA
