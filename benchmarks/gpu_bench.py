# The GPU benchmark of design.md §7 in one call on a GPU machine: llamaduo against HF transformers + PEFT on the
# same random-initialised models (real shapes: Llama-3.2-1B, Gemma-2-2B; speed does not depend on the values),
# the same workloads, the same card, in the same call. The models are built once with transformers and saved as
# HF directories (bf16 safetensors, a small tokenizer: the benchmarks feed token ids), which both stacks load.
# HF side: LoRA r=16 alpha=32 on q,k,v,o,gate,up,down, AdamW, bf16 (the anchors' script,
# ../shared/anchors/hf_baseline.py); llamaduo side: benchmarks/bench_gpu with the base in bf16 and in fp32.
# Each measurement runs in its own process so memory peaks do not mix. Prints a table of ratios and writes
# $OUT/gpu_bench.json.
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


def model_classes(family):
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM
    if os.environ.get("GPU_BENCH_SMOKE"):
        LLAMA_1B.update(SMOKE)
        GEMMA2_2B.update(SMOKE, head_dim=32, query_pre_attn_scalar=32)
    if family == "llama":
        return LlamaForCausalLM, LlamaConfig(**LLAMA_1B, attn_implementation="sdpa")
    return Gemma2ForCausalLM, Gemma2Config(**GEMMA2_2B, attn_implementation="eager")


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
            row = {"name": name, "kind": kind, "args": args}
            row["hf"] = run_json([sys.executable, __file__, "--hf", json.dumps([family, path, kind, args, steps, warm])], 600)
            for prec in ("bf16", "fp32"):
                extra = ["--steps", str(steps), "--warmup", str(warm)] if kind == "train" else []
                row["llamaduo_" + prec] = run_json([bench, path, kind, *map(str, args), *extra, "--precision", prec], 600)
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(f"\nGPU benchmark on {res['device']} ({steps} timed steps after {warm}); ratios are llamaduo / HF+PEFT, same call")
    print(f"{'workload':24} {'HF+PEFT':>14} {'llamaduo bf16':>14} {'ratio':>6} {'llamaduo fp32':>14} {'ratio':>6}   peak GiB HF / bf16 / fp32")
    for row in res["rows"]:
        key = "tok_per_s" if row["kind"] == "train" else "out_tok_per_s"
        h, b, f = row["hf"], row["llamaduo_bf16"], row["llamaduo_fp32"]
        def val(r):
            return f"{r[key]:,}" if key in r else "error"
        def ratio(r):
            return f"{r[key] / h[key]:.2f}" if key in r and key in h else "-"
        mem = " / ".join(str(r.get("peak_mem_GiB", "-")) for r in (h, b, f))
        print(f"{row['name']:24} {val(h):>14} {val(b):>14} {ratio(b):>6} {val(f):>14} {ratio(f):>6}   {mem}")
        for tag, r in (("hf", h), ("bf16", b), ("fp32", f)):
            if "error" in r:
                print(f"  {tag}: {r['error'].strip().splitlines()[-1] if r['error'].strip() else r}")
    json.dump(res, open(os.path.join(out, "gpu_bench.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
