// defines: what the C side may ask of the CUDA backend. Declared always; implemented in kernels/cuda/ when
// the build found nvcc, and by kernels/cpu/no_cuda.c (zero devices) when it did not.
#pragma once

// Number of usable CUDA devices: 0 when the build has no CUDA or the machine has no GPU/driver.
int ld_cuda_device_count(void);
// Writes a one-line description of device i ("NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB"); 0 on success.
int ld_cuda_device_describe(int i, char *buf, int cap);
