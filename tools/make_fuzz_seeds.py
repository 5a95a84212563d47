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
    # the seeds this script writes (judge_reply, provider_reply, yaml_config, api_reply are written by hand)
    for d in ("safetensors", "gguf", "tokenizer_json", "hf_config", "openai_request"):
        shutil.rmtree(os.path.join(SEEDS, d), ignore_errors=True)
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

    # openai_request: first byte picks chat (even) or completions (odd); after the body, a NUL and bytes fed to
    # the JSON matcher of the request's response_format
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", 1, None]},
                                               "c": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
              "required": ["a"]}
    reqs = {
        "chat.bin": (0, {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [
            {"type": "text", "text": "hi"}]}], "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["\n", "."],
            "n": 2, "stream": True, "stream_options": {"include_usage": True}}, b""),
        "schema.bin": (0, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                           "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}},
                       b'{"a": 12, "b": "x", "c": ["p", "q"]}'),
        "json_object.bin": (0, {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
                            b'{"k": [1.5e3, true, null, {"z": "\\u00e9"}]}'),
        "completion.bin": (1, {"model": "m", "prompt": "once", "max_completion_tokens": 3}, b""),
    }
    for name, (kind, body, doc) in reqs.items():
        with open(os.path.join(SEEDS, "openai_request", name), "wb") as f:
            f.write(bytes([kind]) + json.dumps(body).encode() + b"\0" + doc)


if __name__ == "__main__":
    main()
