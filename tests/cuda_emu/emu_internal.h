// defines: what emu.cpp asks of the traffic counter (emu_count.cpp).
#pragma once
#include <stddef.h>

namespace emu {
bool count_on();
bool count_owns(const void *p);  // a pointer into the counter's device region
void *count_alloc(size_t bytes);
void count_free(void *p);
void count_kernel_begin();
void count_kernel_end(const char *name);
void count_add(const char *name, double read, double written);  // a cuBLAS call or a copy
}  // namespace emu
