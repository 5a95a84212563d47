#!/usr/bin/env python3
"""Writes small valid inputs as starting corpora for the fuzz targets (tests/fuzz/seeds/<target>/).
Rerun: python3 tools/make_fuzz_seeds.py   (needs numpy, safetensors, gguf)"""
import json
import os
import shutil

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "tests", "fuzz", "seeds")
TINY = os.path.join(ROOT, "tests", "fixtures", "tiny")


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    for d in ("safetensors", "gguf", "tokenizer_json", "hf_config"):
        os.makedirs(os.path.join(SEEDS, d))
    from safetensors.numpy import save_file
    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, dtype=np.float16)},
              os.path.join(SEEDS, "safetensors", "small.safetensors"), metadata={"format": "pt"})

    import gguf
    w = gguf.GGUFWriter(os.path.join(SEEDS, "gguf", "small.gguf"), "llama")
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_context_length(64)
    w.add_tokenizer_model("gpt2")
    toks = ["a", "b", "c", "ab", "abc", "<s>", "Ġ", "1"]
    w.add_token_list(toks)
    w.add_token_types([1, 1, 1, 1, 1, 3, 1, 1])
    w.add_token_merges(["a b", "ab c"])
    w.add_bos_token_id(5)
    w.add_tensor("token_embd.weight", np.ones((8, 32), dtype=np.float32))
    w.add_tensor("q8", gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), gguf.GGMLQuantizationType.Q8_0),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    tok = json.load(open(os.path.join(TINY, "llama", "tokenizer.json")))
    tok["model"]["vocab"] = {k: v for k, v in tok["model"]["vocab"].items() if v < 280}
    tok["model"]["merges"] = tok["model"]["merges"][:20]
    with open(os.path.join(SEEDS, "tokenizer_json", "bytelevel.json"), "wb") as f:
        f.write(b"\x05hello" + json.dumps(tok).encode())
    spm = {"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
           "pre_tokenizer": None, "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
           "added_tokens": [{"id": 0, "content": "<bos>", "special": True}],
           "model": {"type": "BPE", "byte_fallback": True, "vocab": {"<bos>": 0, "a": 1, "b": 2, "ab": 3, "<0x41>": 4},
                     "merges": [["a", "b"]]}}
    with open(os.path.join(SEEDS, "tokenizer_json", "spm.json"), "wb") as f:
        f.write(b"\x04ab A" + json.dumps(spm).encode())
    for name in ("llama", "gemma2", "gemma3"):
        shutil.copy(os.path.join(TINY, name, "config.json"), os.path.join(SEEDS, "hf_config", name + ".json"))


if __name__ == "__main__":
    main()
