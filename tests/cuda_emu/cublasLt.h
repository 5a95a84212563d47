// The CUDA emulator stands in for <cublasLt.h> (see emu.h).
#pragma once
#include "emu.h"
