# Rewrites a kernels/cuda/*.cu file for the CPU emulator (emu.h): each launch `kernel<<<grid, block>>>(args);`
# becomes `emu::launch(grid, block, "kernel", [=] { kernel(args); });`. Usage: python3 cu2cpp.py IN.cu OUT.cpp
import os
import re
import sys

def split_top(s):  # splits at the commas outside parentheses
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


src = open(sys.argv[1]).read()
# (a kernel template's instance too: `kernel<64><<<...>>>`)
launch = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>()]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
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
    cfg = [c.strip() for c in split_top(m.group(2))]
    body = f"[=] {{ {m.group(1)}({src[m.end():k]}); }}"
    # the counter's name for the kernel: inside a macro whose parameter is the kernel, the argument's (#kernel)
    line_end = src.find("\n", m.start())
    in_macro = src[m.start():line_end].rstrip().endswith("\\")
    name = f"#{m.group(1)}" if in_macro else f'"{m.group(1).split("<")[0]}"'
    if len(cfg) == 2:
        out.append(f"emu::launch({cfg[0]}, {cfg[1]}, {name}, {body})")
    else:  # grid, block, dynamic shared memory (a stream is not supported)
        out.append(f"emu::launch_smem({cfg[0]}, {cfg[1]}, {cfg[2]}, (const void *){m.group(1)}, {name}, {body})")
    i = k + 1
out.append(src[i:])
src = "".join(out)
# dynamic shared memory: `extern __shared__ float name[];` becomes a pointer to the block's buffer
src = re.sub(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?(\w+)\s+(\w+)\s*\[\s*\]\s*;", r"\1 *\2 = (\1 *)emu::dynamic_smem();", src)
out = [src]
os.makedirs(os.path.dirname(os.path.abspath(sys.argv[2])), exist_ok=True)
open(sys.argv[2], "w").write(f'#line 1 "{sys.argv[1]}"\n' + "".join(out))
