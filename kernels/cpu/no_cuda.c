// The CUDA entry points of a build without nvcc: no devices.
#include "../cuda_device.h"

#ifndef LLAMADUO_HAVE_CUDA
int ld_cuda_device_count(void) { return 0; }
int ld_cuda_use_device(int i) { return (void)i, -1; }
int ld_cuda_current_device(void) { return 0; }
int ld_cuda_device_describe(int i, char *buf, int cap) {
    (void)i;
    if (cap > 0) buf[0] = 0;
    return -1;
}
#endif
