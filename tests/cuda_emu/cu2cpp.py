# Rewrites a kernels/cuda/*.cu file for the CPU emulator (emu.h): each launch `kernel<<<grid, block>>>(args);`
# becomes `emu::launch(grid, block, [=] { kernel(args); });`. Usage: python3 cu2cpp.py IN.cu OUT.cpp
import os
import re
import sys

src = open(sys.argv[1]).read()
launch = re.compile(r"([A-Za-z_][\w:]*)\s*<<<(.*?)>>>\s*\(", re.S)
out, i = [], 0
while True:
    m = launch.search(src, i)
    if not m:
        break
    depth, k = 0, m.end() - 1
    while True:  # the argument list's closing parenthesis
        depth += {"(": 1, ")": -1}.get(src[k], 0)
        if depth == 0:
            break
        k += 1
    out.append(src[i:m.start()])
    out.append(f"emu::launch({m.group(2)}, [=] {{ {m.group(1)}({src[m.end():k]}); }})")
    i = k + 1
out.append(src[i:])
os.makedirs(os.path.dirname(os.path.abspath(sys.argv[2])), exist_ok=True)
open(sys.argv[2], "w").write(f'#line 1 "{sys.argv[1]}"\n' + "".join(out))
