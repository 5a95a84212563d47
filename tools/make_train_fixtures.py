#!/usr/bin/env python3
"""Reference loss and LoRA gradients from HF transformers + PEFT (fp32) on the tiny models of
tests/fixtures/tiny/, written to tests/fixtures/train/<model>.safetensors:

  lora.<layer>.<target>.A / .B        the adapter (PEFT layout: A [r, in], B [out, r]; B random, not zero, so
                                      gradients reach A as well)
  grad.<layer>.<target>.A / .B        d loss / d A, d loss / d B
  tokens, targets, positions, starts  a packed batch of two records (targets -100 on prompt tokens)
  loss                                mean cross-entropy over the counted targets
  peft_logits                         logits of the first record with the adapter applied (PEFT, eval mode)
  adamw_losses                        the loss before each of 10 steps of torch AdamW (lr 1e-3, betas 0.9/0.999,
                                      eps 1e-8, weight decay 0.01) with gradients clipped to global norm 1.0
  full.loss, full.grad.<hf name>      full fine-tuning: the same loss and the gradient of every weight of the plain
                                      model (no adapter)
  full.adamw_losses                   10 AdamW steps of full fine-tuning (lr 1e-3, weight decay 0.01 on matrices,
                                      none on norms and biases — HF Trainer's grouping), clipped to norm 1.0
  rs.loss, rs.grad.<layer>.<target>.A/.B  (llama only) the adapter above with use_rslora (scale alpha/sqrt(r))

Packing follows HF's padding-free convention: position ids restart at each record, and attention never
crosses a record (transformers' flash/sdpa paths with position_ids do the same).
Also tests/fixtures/train/llama_peft_adapter/: the adapter as PEFT saves it (names, shapes, config).
Rerun: python3 tools/make_train_fixtures.py [NAME ...]  (needs torch, transformers, peft, safetensors); with names,
only those models' fixtures are rewritten.
"""
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "fixtures", "tiny")
OUT = os.path.join(ROOT, "tests", "fixtures", "train")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA = 4, 8


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    lens = [10, 8]
    tokens = torch.randint(3, 300, (sum(lens),), generator=g)
    targets = torch.full_like(tokens, -100)
    starts, off = [], 0
    for n in lens:  # each record: the first 3 tokens are the prompt, the rest is trained (next-token targets)
        starts.append(off)
        for i in range(off + 3, off + n - 1):
            targets[i] = tokens[i + 1]
        off += n
    positions = torch.cat([torch.arange(n) for n in lens])
    for name in sys.argv[1:] or ("llama", "llama3_rope", "qwen2", "gemma", "gemma2", "gemma3", "llama_gelu", "gemma_gelu"):
        torch.manual_seed(len(name))  # PEFT draws lora_A from the global generator
        model = AutoModelForCausalLM.from_pretrained(os.path.join(TINY, name), dtype=torch.float32, attn_implementation="eager")
        model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS))
        torch.manual_seed(5)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.1)
        model.train()

        def packed_loss():
            # each record through the model on its own (no cross-record attention), losses summed over all
            # counted targets and divided once: exactly the packed loss
            total, count = 0.0, int((targets != -100).sum())
            for s, n in zip(starts, lens):
                out = model(input_ids=tokens[s:s + n][None]).logits[0]
                total = total + torch.nn.functional.cross_entropy(out, targets[s:s + n], ignore_index=-100, reduction="sum")
            return total / count

        loss = packed_loss()
        loss.backward()
        tensors = {"tokens": tokens.to(torch.int32), "targets": targets.to(torch.int32),
                   "positions": positions.to(torch.int32), "starts": torch.tensor(starts, dtype=torch.int32),
                   "loss": loss.detach().reshape(1)}
        for n, p in model.named_parameters():
            if "lora_" not in n:
                continue
            parts = n.split(".")
            layer = parts[parts.index("layers") + 1]
            target = next(t for t in TARGETS if t in parts)
            ab = "A" if "lora_A" in n else "B"
            tensors[f"lora.{layer}.{target}.{ab}"] = p.detach().clone().contiguous()
            tensors[f"grad.{layer}.{target}.{ab}"] = p.grad.detach().clone().contiguous()
        with torch.no_grad():
            model.eval()
            tensors["peft_logits"] = model(input_ids=tokens[:lens[0]][None]).logits[0].contiguous()
            model.train()
        if name == "llama":  # PEFT's own adapter directory, for the file-format comparison
            model.save_pretrained(os.path.join(OUT, "llama_peft_adapter"))
            os.remove(os.path.join(OUT, "llama_peft_adapter", "README.md"))  # PEFT's model-card boilerplate
        params = [p for n, p in model.named_parameters() if "lora_" in n]
        opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        losses = []
        for _ in range(10):
            opt.zero_grad()
            step_loss = packed_loss()
            losses.append(float(step_loss))
            step_loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        tensors["adamw_losses"] = torch.tensor(losses, dtype=torch.float32)
        lora_values = {k: v for k, v in tensors.items() if k.startswith("lora.")}
        if name == "llama":
            rs = AutoModelForCausalLM.from_pretrained(os.path.join(TINY, name), dtype=torch.float32, attn_implementation="eager")
            rs = get_peft_model(rs, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, use_rslora=True))
            with torch.no_grad():
                for n, p in rs.named_parameters():
                    if "lora_" in n:
                        parts = n.split(".")
                        key = f"lora.{parts[parts.index('layers') + 1]}.{next(t for t in TARGETS if t in parts)}.{'A' if 'lora_A' in n else 'B'}"
                        p.copy_(lora_values[key])
            rs.train()
            model = rs
            rs_loss = packed_loss()
            rs_loss.backward()
            tensors["rs.loss"] = rs_loss.detach().reshape(1)
            for n, p in rs.named_parameters():
                if "lora_" in n:
                    parts = n.split(".")
                    key = f"rs.grad.{parts[parts.index('layers') + 1]}.{next(t for t in TARGETS if t in parts)}.{'A' if 'lora_A' in n else 'B'}"
                    tensors[key] = p.grad.detach().clone().contiguous()
        # full fine-tuning of the plain model
        model = AutoModelForCausalLM.from_pretrained(os.path.join(TINY, name), dtype=torch.float32, attn_implementation="eager")
        model.train()
        full_loss = packed_loss()
        full_loss.backward()
        tensors["full.loss"] = full_loss.detach().reshape(1)
        for n, p in model.named_parameters():
            tensors["full.grad." + n] = p.grad.detach().clone().contiguous()
        decay = [p for n, p in model.named_parameters() if p.dim() == 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() != 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3,
                                betas=(0.9, 0.999), eps=1e-8)
        losses = []
        for _ in range(10):
            opt.zero_grad()
            step_loss = packed_loss()
            losses.append(float(step_loss))
            step_loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
            opt.step()
        tensors["full.adamw_losses"] = torch.tensor(losses, dtype=torch.float32)
        save_file(tensors, os.path.join(OUT, name + ".safetensors"))
        print(name, "loss", float(loss.detach()), "full fine-tuning loss", float(full_loss.detach()), "after 10 AdamW steps", losses[-1])


if __name__ == "__main__":
    main()
