// The CUDA emulator stands in for <cuda_bf16.h> (see emu.h).
#pragma once
#include "emu.h"
