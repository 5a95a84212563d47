// The CUDA emulator stands in for <cublas_v2.h> (see emu.h).
#pragma once
#include "emu.h"
