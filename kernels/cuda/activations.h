// defines: the gated activations and the soft-cap (kernels.h k_gated, k_softcap) (kernels/cuda/activations.cu; each
// returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "activation.h"

int kc_gated(Activation act, float *h, uint16_t *h16, const float *gate, const float *up, size_t n);
int kc_gated_backward(Activation act, float *dgate, float *dup, uint16_t *dgate16, uint16_t *dup16, const float *dh, const float *gate,
                      const float *up, size_t n);
int kc_softcap(float *x, size_t n, float cap);
