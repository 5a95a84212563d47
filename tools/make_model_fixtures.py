#!/usr/bin/env python3
"""Writes tiny random-weight models of every supported architecture with HF transformers, together with
the reference logits transformers computes for them (fp32), into tests/fixtures/tiny/<name>/.

Also writes GGUF copies of some (with llama.cpp's conventions: Q/K rows permuted for llama, Gemma norms
stored as 1 + w) so the test can check that an HF directory and a GGUF of the same weights agree.
Rerun: python3 tools/make_model_fixtures.py [NAME ...]   (needs torch, transformers, tokenizers, gguf, numpy)
With names, only those fixtures are rewritten (the others' random draws are still made, so each model gets the
same weights either way).
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
import transformers as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tiny")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def make_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["the quick brown fox jumps over the lazy dog", "hello world, hello tokens", "1234 5678 dates: 2024-01-02",
            "a tiny model for tests of the llamaduo engine"] * 20
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text, trainer)
    return tok


COMMON = dict(vocab_size=320, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=128, bos_token_id=0, eos_token_id=2, pad_token_id=None)

SPECS = {
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(num_hidden_layers=2, rms_norm_eps=1e-5, rope_theta=10000.0,
                                                         tie_word_embeddings=False)),
    "llama3_rope": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(
        num_hidden_layers=2, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=64))),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(num_hidden_layers=2, rms_norm_eps=1e-6, rope_theta=1e6,
                                                         tie_word_embeddings=False)),
    "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, dict(num_hidden_layers=2, head_dim=32, num_key_value_heads=1,
                                                         hidden_activation="gelu_pytorch_tanh")),
    "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM, dict(
        num_hidden_layers=2, head_dim=32, sliding_window=5, query_pre_attn_scalar=24,
        attn_logit_softcapping=3.0, final_logit_softcapping=2.0)),
    "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, dict(
        num_hidden_layers=3, head_dim=32, sliding_window=5, query_pre_attn_scalar=32,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"])),
    # exact (erf) GELU in a Llama-style MLP; and a Gemma config with hidden_act "gelu" and no hidden_activation,
    # as Gemma's own releases wrote it, which transformers reads as the tanh approximation
    "llama_gelu": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(num_hidden_layers=2, rms_norm_eps=1e-5, rope_theta=10000.0,
                                                              tie_word_embeddings=False, hidden_act="gelu")),
    "gemma_gelu": (tf.GemmaConfig, tf.GemmaForCausalLM, dict(num_hidden_layers=2, head_dim=32, num_key_value_heads=1,
                                                              hidden_act="gelu", hidden_activation=None)),
}


def perturb_norms(model, gen):
    # Random norm weights (HF initialises them to 0 / 1), so norm variants are really exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.mean() > 0.5 else 0.0))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def write_gguf(path, arch, model, cfg, tok):
    import gguf
    w = gguf.GGUFWriter(path, arch)
    n_head, n_kv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rp = cfg.rope_parameters
    theta = rp["full_attention"]["rope_theta"] if "full_attention" in rp else rp["rope_theta"]
    w.add_rope_freq_base(theta)
    if arch == "gemma3":
        w.add_sliding_window(cfg.sliding_window)
        w.add_array("gemma3.attention.sliding_window_pattern", [t == "sliding_attention" for t in cfg.layer_types])
    vocab = tok.get_vocab()
    toks = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_types([3 if t.startswith("<|") else 1 for t in toks])
    merges = json.loads(tok.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)
    w.add_chat_template(CHATML)

    def permute(x, heads):
        return x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "pre_feedforward_layernorm": "ffn_norm",
             "post_feedforward_layernorm": "post_ffw_norm"}
    names["post_attention_layernorm"] = "post_attention_norm" if arch == "gemma3" else "ffn_norm"
    for name, p in model.state_dict().items():
        x = p.detach().float().numpy()
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            gname = "output.weight"
        else:
            parts = name.split(".")
            layer, rest = parts[2], ".".join(parts[3:-1])
            gname = f"blk.{layer}.{names[rest]}.{parts[-1]}"
        if arch == "llama" and gname.endswith("attn_q.weight"):
            x = permute(x, n_head)
        if arch == "llama" and gname.endswith("attn_k.weight"):
            x = permute(x, n_kv)
        if arch == "gemma3" and "norm" in gname:
            x = x + 1.0
        w.add_tensor(gname, np.ascontiguousarray(x.astype(np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    only = set(sys.argv[1:])
    if not only and os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT, exist_ok=True)
    tok = make_tokenizer()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 300, (1, 24), generator=gen)
    for name, (cfg_cls, model_cls, extra) in SPECS.items():
        torch.manual_seed(len(name))
        cfg = cfg_cls(**{**COMMON, **extra, "initializer_range": 0.08})
        model = model_cls(cfg).float().eval()
        perturb_norms(model, gen)
        if only and name not in only:
            continue
        d = os.path.join(OUT, name)
        model.save_pretrained(d, safe_serialization=True)
        if name == "gemma_gelu":  # transformers saves its reading (gelu_pytorch_tanh); keep the file as released
            with open(os.path.join(d, "config.json")) as f:
                saved = json.load(f)
            saved["hidden_act"] = "gelu"
            saved.pop("hidden_activation", None)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(saved, f, indent=2)
        tok.save(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"chat_template": CHATML, "eos_token": "<|im_end|>", "bos_token": None}, f)
        with torch.no_grad():
            logits = model(ids).logits[0].float().numpy()
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump({"tokens": ids[0].tolist(), "logits": logits.round(7).tolist(),
                       "transformers": tf.__version__}, f)
        if name in ("llama", "gemma3"):
            write_gguf(os.path.join(OUT, name + ".gguf"), name, model, cfg, tok)
        if name == "llama":  # the same architecture as sharded bf16 safetensors
            d2 = os.path.join(OUT, "llama_sharded_bf16")
            model.to(torch.bfloat16).save_pretrained(d2, safe_serialization=True, max_shard_size="150KB")
            tok.save(os.path.join(d2, "tokenizer.json"))
            m2 = model_cls.from_pretrained(d2, dtype=torch.float32).eval()
            with torch.no_grad():
                logits = m2(ids).logits[0].float().numpy()
            with open(os.path.join(d2, "reference.json"), "w") as f:
                json.dump({"tokens": ids[0].tolist(), "logits": logits.round(7).tolist()}, f)
        print(name, "ok")


if __name__ == "__main__":
    main()
