#!/usr/bin/env python3
"""The reference side of the CPU training benchmark: HF transformers + PEFT on torch CPU, the same model
(dequantised from the same GGUF), LoRA r=8 alpha=16 on every linear layer, AdamW, steps of TOKENS tokens
made of the same chat records (packed back to back), same threads. Prints one JSON line.
Usage: bench_train_hf.py MODEL.gguf RECORDS.jsonl THREADS TOKENS STEPS"""
import json
import os
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    path, records, threads, tokens, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    d, f = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    ids = []
    for line in open(records):
        msgs = json.loads(line)["messages"]
        enc = tok.apply_chat_template(msgs, tokenize=True)
        ids += list(enc["input_ids"] if hasattr(enc, "keys") else enc)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batches = [torch.tensor(ids[i * tokens:(i + 1) * tokens])[None] for i in range(steps + 2)]
    times = []
    for i, x in enumerate(batches):
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t0)
    print(json.dumps({"engine": "hf+peft", "torch": torch.__version__, "threads": threads, "tokens_per_step": tokens,
                      "steps": len(times), "tokens_per_s": round(tokens * len(times) / sum(times), 1)}))


if __name__ == "__main__":
    main()
