#!/usr/bin/env python3
"""Checks `llamaduo export` against HF transformers by hand (needs torch + transformers): loads the merged
directory with transformers and compares its logits with PEFT's on the same tokens (from the train fixture).
Usage: build/llamaduo export --model tests/fixtures/tiny/llama --adapter tests/fixtures/train/llama_peft_adapter
           --out /tmp/merged && python3 tools/check_export.py /tmp/merged"""
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
    fx = load_file(os.path.join(ROOT, "tests", "fixtures", "train", "llama.safetensors"))
    T = int(fx["starts"][1])
    with torch.no_grad():
        logits = model(fx["tokens"][:T].long()[None]).logits[0]
    ref = fx["peft_logits"]
    err = float((logits - ref).norm() / ref.norm())
    print(f"transformers on the merged export vs PEFT with the adapter: rel err {err:.2e}")
    sys.exit(0 if err < 1e-4 else 1)


if __name__ == "__main__":
    main()
