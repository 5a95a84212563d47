// The CUDA emulator stands in for <cuda_runtime.h> (see emu.h).
#pragma once
#include "emu.h"
