// CUDA device discovery for the C side (see kernels/cuda_device.h).
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" {
#include "cuda_device.h"
}

extern "C" int ld_cuda_device_count(void) {
    int n = 0;
    // No driver or no GPU is an ordinary state on CPU machines, not an error.
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int ld_cuda_use_device(int i) {
    if (cudaSetDevice(i) == cudaSuccess) return 0;
    cudaGetLastError();
    return -1;
}

extern "C" int ld_cuda_current_device(void) {
    int i = 0;
    if (cudaGetDevice(&i) != cudaSuccess) cudaGetLastError(), i = 0;
    return i;
}

extern "C" int ld_cuda_device_describe(int i, char *buf, int cap) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) return -1;
    snprintf(buf, (size_t)cap, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}
