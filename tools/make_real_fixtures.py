#!/usr/bin/env python3
"""Reference numbers for the two packaged real models (models/*.gguf, fetched by tools/setup.sh), written to
tests/fixtures/real/<model>.{json,bin}:

- token ids of a text sample from HF transformers' GGUF tokenizer conversion;
- HF transformers logits (weights dequantised to fp32 by its GGUF loader) at every position, for the top-256
  columns of each position plus 1024 fixed columns (float32, .bin), and the full-vocabulary argmax;
- HF's mean NLL over the sample;
- llama.cpp (llama-cpp-python, quantised arithmetic): teacher-forced argmax per position and the mean NLL;
- gguf-py dequantisation of one tensor of every quantisation type in the file (first 256 values, sum).

Rerun: python3 tools/make_real_fixtures.py  (needs torch, transformers, gguf, numpy, llama-cpp-python)
"""
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "real")
TEXT = (
    "The migration of a task from a large hosted model to a small local one starts with a handful of examples. "
    "A team collects the prompts it already sends, together with the answers it liked, and splits them into a "
    "training set and a held-out test set. The small model is fine-tuned on the training set, then answers every "
    "test prompt, and the large model grades those answers against the references. When the grades fall short, "
    "the large model writes more examples in the style of the originals; duplicates and near copies of the test "
    "prompts are removed before the next round of training. In 2024 the authors of the original study reported "
    "that students of two to eight billion parameters reached between 85 and 105 percent of the teacher's score. "
    "Costs matter too: 1,000 requests a day at $0.01 each adds up to $3,650 a year, while a 135M model runs on a laptop."
)
MODELS_LIST = [("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), ("gemma3", "gemma-3-270m-q4_k_m.gguf")]
N_FIXED = 448
TOPK = 64


def dequant_refs(path):
    import gguf
    r = gguf.GGUFReader(path)
    seen, out = set(), []
    for t in r.tensors:
        ty = t.tensor_type.name
        if ty in seen:
            continue
        seen.add(ty)
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).ravel()
        out.append({"name": t.name, "type": ty, "first": x[:256].tolist(), "sum": float(x.sum()),
                    "sumabs": float(np.abs(x).sum())})
    return out


def hf_logits(path, ids):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def hf_ids(path):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    return tok(TEXT, add_special_tokens=True)["input_ids"]


def llamacpp(path, ids):
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=1024, logits_all=True, n_threads=os.cpu_count(), verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    m = logits.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    nll = float(np.mean(lse[:-1] - logits[np.arange(len(ids) - 1), ids[1:]]))
    return logits.argmax(axis=1).tolist(), nll


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, fname in MODELS_LIST:
        path = os.path.join(MODELS, fname)
        ids = hf_ids(path)
        logits = hf_logits(path, ids)
        T, V = logits.shape
        fixed = np.sort(rng.choice(V, N_FIXED, replace=False))
        cols = np.zeros((T, TOPK + N_FIXED), dtype=np.int32)
        vals = np.zeros((T, TOPK + N_FIXED), dtype=np.float32)
        for t in range(T):
            top = np.argsort(-logits[t])[:TOPK]
            cols[t] = np.concatenate([top, fixed])
            vals[t] = logits[t, cols[t]]
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(cols.tobytes())
            f.write(vals.tobytes())
        lg = logits.astype(np.float64)
        mx = lg.max(axis=1, keepdims=True)
        lse = (mx + np.log(np.exp(lg - mx).sum(axis=1, keepdims=True)))[:, 0]
        hf_nll = float(np.mean(lse[:-1] - lg[np.arange(T - 1), ids[1:]]))
        rec = {"model": fname, "text": TEXT, "ids": ids, "vocab": V, "columns": TOPK + N_FIXED,
               "hf_argmax": logits.argmax(axis=1).tolist(), "hf_nll": hf_nll, "dequant": dequant_refs(path)}
        try:
            rec["llamacpp_argmax"], rec["llamacpp_nll"] = llamacpp(path, ids)
        except ImportError:
            print("llama-cpp-python missing: llama.cpp references not written", file=sys.stderr)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(rec, f)
        print(name, T, "tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
