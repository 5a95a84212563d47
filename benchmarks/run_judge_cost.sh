#!/usr/bin/env bash
# The dollars of a paper-sized judge stage — 100 test prompts, K=4 answers each, M=10 judgments per answer (4,000
# requests) — synchronous against the providers' batch APIs, from their listed prices. The prompts are the real ones:
# `llamaduo judge` sends them to the local fault server, which logs every body; the shipped task data (summarize,
# classify, closed_qa, coding) gives the 100 prompts and references, the references (cut to 400 characters) stand
# in for the answers. Prompt tokens at 4 characters a token; each reply (two scores, two reasons) at 80 tokens.
# Usage: benchmarks/run_judge_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mktemp -d); trap 'kill $srv 2>/dev/null; rm -rf "$OUT"' EXIT
cmake --build build --target llamaduo -j"$(nproc)" >/dev/null
python3 tests/fault_server.py --port-file "$OUT/port" --log "$OUT/log" --log-bodies & srv=$!
for _ in $(seq 100); do [ -f "$OUT/port" ] && break; sleep 0.05; done
python3 - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
recs = [json.loads(l) for f in sorted(glob.glob("configs/data/[cs]*.jsonl")) if "dates" not in f for l in open(f)][:100]
with open(f"{out}/test.jsonl", "w") as t, open(f"{out}/answers.jsonl", "w") as a:
    for r in recs:
        t.write(json.dumps(r) + "\n")
        for k in range(4):
            a.write(json.dumps({"id": r["id"], "sample": k, "text": f"{r['messages'][-1]['content'][:400]} ({k + 1})"}) + "\n")
PY
cat >"$OUT/c.yaml" <<YAML
service: {provider: openai, base_url: "http://127.0.0.1:$(cat "$OUT/port")/v1", model: judge, concurrency: 64, max_attempts: 2}
task: {description: the paper's tasks}
judge: {judgments_per_answer: 10, max_rejudge: 0}
privacy: {enabled: false}
YAML
build/llamaduo judge --config "$OUT/c.yaml" --test "$OUT/test.jsonl" --answers "$OUT/answers.jsonl" --out-dir "$OUT/j" >"$OUT/judge.out" 2>&1 || { tail -3 "$OUT/judge.out"; exit 1; }
python3 - "$OUT/log" <<'PY'
import json, sys
bodies = [json.loads(l)["body"] for l in open(sys.argv[1]) if '"body"' in l]
chars = sum(len(json.dumps(b["messages"])) for b in bodies)
n = len(bodies)
tin, tout = chars / 4, 80 * n
print(f"{n} judge requests, {tin / 1e6:.2f} M prompt tokens (4 chars a token), {tout / 1e6:.2f} M completion tokens (80 a reply)\n")
print("| service LLM (listed price, $ per M in / out) | synchronous | batch (50%) | saved |")
print("| --- | --- | --- | --- |")
for name, pin, pout in (("gpt-4o-mini (0.15 / 0.60)", 0.15, 0.60), ("gpt-4o (2.50 / 10.00)", 2.5, 10), ("claude-3-5-haiku (0.80 / 4.00)", 0.8, 4),
                        ("claude-3-5-sonnet (3.00 / 15.00)", 3, 15), ("gemini-1.5-flash (0.075 / 0.30)", 0.075, 0.3)):
    sync = (tin * pin + tout * pout) / 1e6
    print(f"| {name} | ${sync:.2f} | ${sync / 2:.2f} | ${sync / 2:.2f} |")
PY
