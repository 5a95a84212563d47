#!/usr/bin/env python3
"""Two `llamaduo train` output directories against each other: every loss of metrics.jsonl and every tensor of the
result (adapter/adapter_model.safetensors, or model/*.safetensors after --method full), each within a relative
tolerance (a tensor: ||a - b|| / ||b||). Prints the worst of each and exits 1 when one is over.

usage: compare_runs.py DIR_A DIR_B [--tol 1e-5]"""
import argparse
import array
import glob
import json
import math
import os
import struct
import sys

DTYPES = {"F32": ("f", 4), "BF16": ("H", 2)}


def tensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        code, size = DTYPES[t["dtype"]]
        lo, hi = t["data_offsets"]
        a = array.array(code)
        a.frombytes(data[lo:hi])
        if code == "H":  # bf16: the high half of an fp32
            a = array.array("f", struct.unpack("<%df" % len(a), b"".join(struct.pack("<I", v << 16) for v in a)))
        out[name] = a
    return out


def result_tensors(d):
    files = glob.glob(os.path.join(d, "adapter", "*.safetensors")) or sorted(glob.glob(os.path.join(d, "model", "*.safetensors")))
    if not files:
        sys.exit(f"compare_runs: {d} holds no adapter/ or model/ safetensors")
    out = {}
    for f in files:
        out.update(tensors(f))
    return out


def losses(d):
    out = {}
    for line in open(os.path.join(d, "metrics.jsonl")):
        j = json.loads(line)
        for k in ("loss", "val_loss"):
            if k in j:
                out[(j["step"], k)] = j[k]
    return out


def rel(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b))
    den = sum(y * y for y in b)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tol", type=float, default=1e-5)
    o = ap.parse_args()
    la, lb = losses(o.a), losses(o.b)
    if la.keys() != lb.keys():
        sys.exit(f"compare_runs: the runs logged different steps ({len(la)} vs {len(lb)} values)")
    worst_loss = max(abs(la[k] - lb[k]) / max(abs(lb[k]), 1e-12) for k in la)
    ta, tb = result_tensors(o.a), result_tensors(o.b)
    if ta.keys() != tb.keys():
        sys.exit("compare_runs: the results hold different tensors")
    worst_t, name = max((rel(ta[k], tb[k]), k) for k in ta)
    print(f"{len(la)} losses, worst rel diff {worst_loss:.2e}; {len(ta)} tensors, worst rel diff {worst_t:.2e} ({name})")
    sys.exit(0 if worst_loss <= o.tol and worst_t <= o.tol else 1)


if __name__ == "__main__":
    main()
