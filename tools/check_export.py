#!/usr/bin/env python3
"""Checks `llamaduo export` against the reference implementations by hand.

HF directory (needs torch + transformers): loads the merged directory with transformers and compares its logits
with PEFT's on the same tokens (from the train fixture):
    build/llamaduo export --model tests/fixtures/tiny/llama --adapter tests/fixtures/train/llama_peft_adapter --out /tmp/merged
    python3 tools/check_export.py /tmp/merged

GGUF (needs llama-cpp-python + numpy): teacher-forced on the same token ids, the share of positions where
llama.cpp's top prediction on the exported file equals llamaduo's on the same file (and, with --base/--adapter,
llamaduo's on the base with the adapter applied unmerged):
    build/llamaduo export --model models/SmolLM2-135M-Instruct.Q4_1.gguf --adapter RUN/adapter --type q8_0 --out /tmp/x.gguf
    python3 tools/check_export.py --gguf /tmp/x.gguf --text ../shared/design.md [--base BASE --adapter RUN/adapter]
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMADUO = os.path.join(ROOT, "build", "llamaduo")


def check_hf(path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    fx = load_file(os.path.join(ROOT, "tests", "fixtures", "train", "llama.safetensors"))
    T = int(fx["starts"][1])
    with torch.no_grad():
        logits = model(fx["tokens"][:T].long()[None]).logits[0]
    ref = fx["peft_logits"]
    err = float((logits - ref).norm() / ref.norm())
    print(f"transformers on the merged export vs PEFT with the adapter: rel err {err:.2e}")
    return err < 1e-4


def llamaduo_per_token(model, text, ctx, adapter=None):
    cmd = [LLAMADUO, "perplexity", "--model", model, "--file", text, "--ctx", str(ctx), "--per-token"]
    if adapter:
        cmd += ["--adapter", adapter]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    rows = [json.loads(l) for l in out if '"pos"' in l]
    windows = {}
    for r in rows:
        windows.setdefault(r["window"], []).append(r)
    return [sorted(w, key=lambda r: r["pos"]) for _, w in sorted(windows.items())], json.loads(out[-1])


def check_gguf(a):
    import numpy as np
    from llama_cpp import Llama
    ours, summary = llamaduo_per_token(a.gguf, a.text, a.ctx)
    llm = Llama(model_path=a.gguf, n_ctx=a.ctx, logits_all=True, n_threads=os.cpu_count(), verbose=False)
    agree = total = 0
    nll = 0.0
    for w in ours:
        ids = [r["token"] for r in w]
        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
        top = logits.argmax(axis=1)
        agree += sum(int(top[i] == r["argmax"]) for i, r in enumerate(w))
        total += len(w)
        m = logits.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        nll += float(np.sum(lse[:-1] - logits[np.arange(len(ids) - 1), ids[1:]]))
    share = agree / total
    print(f"{os.path.basename(a.gguf)}: llama.cpp loads it; teacher-forced argmax agrees with llamaduo's on the same file at "
          f"{agree}/{total} = {100 * share:.1f}% of positions; llamaduo ppl {summary['ppl']:.3f}, "
          f"llama.cpp ppl {np.exp(nll / (total - len(ours))):.3f}")
    ok = share >= 0.98
    if a.base and a.adapter:
        unmerged, _ = llamaduo_per_token(a.base, a.text, a.ctx, a.adapter)
        same = sum(int(x["argmax"] == y["argmax"]) for wa, wb in zip(ours, unmerged) for x, y in zip(wa, wb))
        print(f"llamaduo on the export vs on the base with the adapter unmerged: argmax agrees at {100 * same / total:.1f}%")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir", nargs="?")
    ap.add_argument("--gguf")
    ap.add_argument("--text")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--base")
    ap.add_argument("--adapter")
    a = ap.parse_args()
    ok = check_gguf(a) if a.gguf else check_hf(a.hf_dir)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
