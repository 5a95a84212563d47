# The GPU benchmark of design.md §7 in one call on a GPU machine: llamaduo against HF transformers + PEFT on the
# same random-initialised models (real shapes: Llama-3.2-1B, Gemma-2-2B; speed does not depend on the values),
# the same workloads, the same card, in the same call. The models are built once with transformers and saved as
# HF directories (bf16 safetensors, a small tokenizer: the benchmarks feed token ids), which both stacks load.
# HF side: LoRA r=16 alpha=32 on q,k,v,o,gate,up,down, AdamW, bf16 (the anchors' script,
# ../shared/anchors/hf_baseline.py); llamaduo side: benchmarks/bench_gpu with the base in bf16 and in fp32.
# Each measurement runs in its own process so memory peaks do not mix. MFU: each engine's tok/s times the model
# FLOPs per token (flops_per_token) over the card's bf16 matmul rate, measured in its own child in the same call.
# Prints a table of ratios and MFU and writes $OUT/gpu_bench.json.
# Usage: python3 benchmarks/gpu_bench.py BENCH_GPU [llama|gemma|all] [--quick] [--smoke]
# --smoke: the harness itself on tiny shapes in seconds (HF on the CPU when there is no GPU; BENCH_GPU may be a
# build against the CUDA emulator) — numbers meaningless, every path exercised.
import json, os, shutil, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_FROM = os.path.join(HERE, "..", "tests", "fixtures", "tiny", "llama")

LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5)
GEMMA2_2B = dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, max_position_embeddings=8192, query_pre_attn_scalar=256, sliding_window=4096,
                 attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
# (name, family, kind, args): train args (seq, batch), generate args (batch, prompt, new) — design.md §7's rows
WORKLOADS = [
    ("llama1b_seq2048_b8", "llama", "train", (2048, 8)),
    ("llama1b_seq512_b16", "llama", "train", (512, 16)),
    ("llama1b_gen_b64", "llama", "generate", (64, 256, 256)),
    ("gemma2_2b_seq1024_b4", "gemma", "train", (1024, 4)),
    ("gemma2_2b_gen_b32", "gemma", "generate", (32, 256, 128)),
]


SMOKE = dict(vocab_size=1000, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def model_config(family):  # a family's config, in the smoke run its tiny shapes (parent and children alike)
    smoke = os.environ.get("GPU_BENCH_SMOKE")
    if family == "llama":
        return dict(LLAMA_1B, **SMOKE) if smoke else dict(LLAMA_1B)
    return dict(GEMMA2_2B, **SMOKE, head_dim=32, query_pre_attn_scalar=32) if smoke else dict(GEMMA2_2B)


def model_classes(family):
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM
    if family == "llama":
        return LlamaForCausalLM, LlamaConfig(**model_config(family), attn_implementation="sdpa")
    return Gemma2ForCausalLM, Gemma2Config(**model_config(family), attn_implementation="eager")


def matmul_params(cfg):
    """Weights of the matmuls a token's forward runs: q, k, v, o, gate, up, down in every layer, and the LM head
    (vocab × hidden, tied or not: a matmul every token pays). The embedding is a lookup, not a matmul, and the norms
    are not matmuls: neither is counted. Returns (the layers', the head's)."""
    D, F, L, H, KV = (cfg[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                       "num_key_value_heads"))
    hd = cfg.get("head_dim", D // H)
    return L * (D * hd * (2 * H + 2 * KV) + 3 * D * F), cfg["vocab_size"] * D


def attention_flops(cfg, ntok):
    """Forward FLOPs of attention itself (QKᵀ and PV: 2·2·head_dim·heads per key, per layer) summed over a
    sequence's first ntok query positions, causal: position p attends p + 1 keys, at most sliding_window in Gemma 2's
    local layers (every other one, from the first). The window, 4096, exceeds every context here: it changes nothing."""
    L, H = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    hd, w = cfg.get("head_dim", cfg["hidden_size"] // H), cfg.get("sliding_window")
    full = ntok * (ntok + 1) // 2
    local = sum(min(p + 1, w) for p in range(ntok)) if w else full
    n_local = (L + 1) // 2 if w else 0
    return 4 * hd * H * (n_local * local + (L - n_local) * full)


def flops_per_token(cfg, kind, args):
    """Model FLOPs per token of a workload (per output token for generate), N = matmul_params.
    train (seq, batch): 4N — forward 2N, backward 2N for the activations' gradients; the frozen base gets no weight
    gradients, and LoRA's own FLOPs (r=16: 1.4 % of these on Llama-3.2-1B) are left out — plus attention, its
    backward twice its forward (recomputation in a fused kernel is not model FLOPs).
    generate (batch, prompt, new): what the timed span runs, over its output tokens: the prefill and new - 1 decode
    steps, each a forward of 2N a token through the layers plus attention over the context so far, and the head only
    where a token is sampled (new times)."""
    layers, head = matmul_params(cfg)
    if kind == "train":
        seq = args[0]
        return 4 * (layers + head) + 3 * attention_flops(cfg, seq) / seq
    _, plen, nnew = args
    return (2 * layers * (plen + nnew - 1) + 2 * head * nnew + attention_flops(cfg, plen + nnew - 1)) / nnew


def matmul_rate():
    """The card's dense bf16 matmul rate, TFLOP/s: torch.matmul on square bf16 matrices, the best of a few sizes,
    each the best of three timed runs after a warm-up (a few seconds in all); 512 × 512 alone in the smoke run or
    without a GPU. Sizes stop where the operands would take over half the free memory."""
    import torch
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    small = os.environ.get("GPU_BENCH_SMOKE") or dev == "cpu"
    rates = {}
    for n in (512,) if small else (4096, 8192, 16384):
        if rates and dev == "cuda" and 3 * 2 * n * n > torch.cuda.mem_get_info()[0] // 2:
            break
        a, b = torch.randn(n, n, device=dev, dtype=torch.bfloat16), torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
        iters = 20 if n >= 16384 else 50
        for _ in range(5):
            torch.matmul(a, b, out=c)
        best = float("inf")
        for _ in range(3):
            sync()
            t = time.perf_counter()
            for _ in range(iters):
                torch.matmul(a, b, out=c)
            sync()
            best = min(best, time.perf_counter() - t)
        rates[n] = round(2 * n**3 * iters / best / 1e12, 2)
        del a, b, c
    return {"matmul_bf16_tflops": max(rates.values()), "tflops_by_size": rates, "device": dev}


def save_model(family, path):
    import torch
    cls, cfg = model_classes(family)
    torch.manual_seed(0)
    m = cls(cfg).to(torch.bfloat16)
    m.save_pretrained(path, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER_FROM, f), path)


def hf_measure(family, path, kind, args, steps, warm):
    import torch
    from peft import LoraConfig, get_peft_model
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    peak = (lambda: round(torch.cuda.max_memory_allocated() / 2**30, 2)) if dev == "cuda" else (lambda: None)
    cls, cfg = model_classes(family)
    m = cls.from_pretrained(path, config=cfg, dtype=torch.bfloat16).to(dev)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if kind == "train":
        seq, bsz = args
        lc = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                        task_type="CAUSAL_LM")
        m = get_peft_model(m, lc)
        m.train()
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
        x = torch.randint(0, cfg.vocab_size, (bsz, seq), device=dev)
        for i in range(warm + steps):
            if i == warm:
                sync()
                t = time.time()
            out = m(input_ids=x, labels=x)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync()
        dt = (time.time() - t) / steps
        return {"engine": "hf+peft", "tok_per_s": round(bsz * seq / dt), "step_s": round(dt, 4),
                "peak_mem_GiB": peak()}
    bsz, plen, nnew = args
    m.eval()
    x = torch.randint(0, cfg.vocab_size, (bsz, plen), device=dev)
    with torch.no_grad():
        m.generate(input_ids=x[:, :16], max_new_tokens=8, min_new_tokens=8, do_sample=False)
        sync()
        t = time.time()
        m.generate(input_ids=x, max_new_tokens=nnew, min_new_tokens=nnew, do_sample=False)
        sync()
        dt = time.time() - t
    return {"engine": "hf+peft", "out_tok_per_s": round(bsz * nnew / dt), "s": round(dt, 2),
            "peak_mem_GiB": peak()}


def run_json(cmd, timeout):
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr or p.stdout)[-600:], "rc": p.returncode}
    r = json.loads(lines[-1])
    r["wall_s"] = round(time.time() - t, 1)
    return r


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--hf":  # child: one HF measurement
        family, path, kind, args, steps, warm = json.loads(sys.argv[2])
        print(json.dumps(hf_measure(family, path, kind, tuple(args), steps, warm)))
        return
    if len(sys.argv) >= 2 and sys.argv[1] == "--matmul":  # child: the card's bf16 matmul rate
        print(json.dumps(matmul_rate()))
        return
    if len(sys.argv) < 2:
        sys.exit("usage: gpu_bench.py BENCH_GPU [llama|gemma|all] [--quick]")
    bench = sys.argv[1]
    which = next((a for a in sys.argv[2:] if not a.startswith("--")), "all")
    quick, smoke = "--quick" in sys.argv, "--smoke" in sys.argv
    steps, warm = (1, 1) if smoke else (3, 1) if quick else (8, 3)
    if smoke:
        os.environ["GPU_BENCH_SMOKE"] = "1"  # the children too
        global WORKLOADS
        WORKLOADS = [(n, f, k, (64, 2) if k == "train" else (2, 16, 8)) for n, f, k, _ in WORKLOADS]
    out = os.environ.get("OUT", "/tmp")
    root = "/tmp/llamaduo_gpu_bench" + ("_smoke" if smoke else "")
    res = {"steps": steps, "warmup": warm, "rows": []}
    import torch
    res["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (smoke run)"
    res["matmul"] = run_json([sys.executable, __file__, "--matmul"], 120)
    rate = res["matmul_bf16_tflops"] = res["matmul"].get("matmul_bf16_tflops")
    print(f"bf16 matmul: {res['matmul']}", flush=True)
    for family in ("llama", "gemma"):
        if which not in ("all", family):
            continue
        path = os.path.join(root, family)
        if not os.path.exists(os.path.join(path, "config.json")):
            t = time.time()
            save_model(family, path)
            print(f"{family}: random-initialised model saved to {path} in {time.time() - t:.0f} s", flush=True)
        for name, fam, kind, args in WORKLOADS:
            if fam != family:
                continue
            row = {"name": name, "kind": kind, "args": args, "flops_per_token": flops_per_token(model_config(family), kind, args)}
            row["hf"] = run_json([sys.executable, __file__, "--hf", json.dumps([family, path, kind, args, steps, warm])], 600)
            extra = ["--steps", str(steps), "--warmup", str(warm)] if kind == "train" else []
            for prec in ("bf16", "fp32"):
                row["llamaduo_" + prec] = run_json([bench, path, kind, *map(str, args), *extra, "--precision", prec], 600)
            if kind == "train":  # activation checkpointing: the memory target's run
                row["llamaduo_bf16_ckpt"] = run_json([bench, path, kind, *map(str, args), *extra, "--precision", "bf16",
                                                      "--recompute", "1"], 600)
            key = "tok_per_s" if kind == "train" else "out_tok_per_s"
            for eng in ("hf", "llamaduo_bf16", "llamaduo_fp32", "llamaduo_bf16_ckpt"):
                if eng not in row:
                    continue
                if key in row[eng] and rate:
                    row[eng]["mfu"] = round(row[eng][key] * row["flops_per_token"] / (rate * 1e12), 4)
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(f"\nGPU benchmark on {res['device']} ({steps} timed steps after {warm}); ratios are llamaduo / HF+PEFT, same call; "
          f"MFU against the {rate} TFLOP/s bf16 matmul measured in it")
    print(f"{'workload':24} {'HF+PEFT':>14} {'llamaduo bf16':>14} {'ratio':>6} {'llamaduo fp32':>14} {'ratio':>6}   "
          f"{'peak GiB HF / bf16 / fp32':28} MFU % HF / bf16 / fp32")
    for row in res["rows"]:
        key = "tok_per_s" if row["kind"] == "train" else "out_tok_per_s"
        h, b, f = row["hf"], row["llamaduo_bf16"], row["llamaduo_fp32"]
        def val(r):
            return f"{r[key]:,}" if key in r else "error"
        def ratio(r):
            return f"{r[key] / h[key]:.2f}" if key in r and key in h else "-"
        mem = " / ".join(str(r.get("peak_mem_GiB", "-")) for r in (h, b, f))
        mfu = " / ".join(f"{100 * r['mfu']:.1f}" if "mfu" in r else "-" for r in (h, b, f))
        print(f"{row['name']:24} {val(h):>14} {val(b):>14} {ratio(b):>6} {val(f):>14} {ratio(f):>6}   {mem:28} {mfu}")
        c = row.get("llamaduo_bf16_ckpt")
        if c is not None:
            share = f"{c['peak_mem_GiB'] / h['peak_mem_GiB']:.2f} of HF's" if "peak_mem_GiB" in c and h.get("peak_mem_GiB") else "-"
            print(f"  with activation checkpointing (bf16): {val(c)} tok/s, ratio {ratio(c)}, peak {c.get('peak_mem_GiB', '-')} GiB "
                  f"({share}), MFU {100 * c['mfu']:.1f}" if "mfu" in c else f"  with activation checkpointing (bf16): {val(c)}")
        for tag, r in (("hf", h), ("bf16", b), ("fp32", f), ("bf16 ckpt", c or {})):
            if "error" in r:
                print(f"  {tag}: {r['error'].strip().splitlines()[-1] if r['error'].strip() else r}")
    json.dump(res, open(os.path.join(out, "gpu_bench.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
