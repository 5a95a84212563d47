#!/usr/bin/env bash
# The loop learns from its failures (host/answer_scores.c, host/synth.c, the probe stage in host/run.c): a task with
# two categories whose checker fails every "beta" answer, scored by metric rules alone (no judge request). The
# targeted synthesis of round 2 aims half its calls at beta's failures and so draws most of its seeds from beta
# (against beta's base rate among the seeds),
# shows the critique, and names the probe item in each pair's lineage; a uniform run on the same data does not
# aim. The fault server's log of every request body holds no test prompt, reference or answer in any synthesis
# request. Bad pass rules are refused at run --check; a checker that crashes stops the stage naming it.
# Usage: test_targeted.sh BUILD_DIR SOURCE_DIR
source "$2/tests/harness.sh"
export LD_FAKE_KEY="sk-llamaduo-FAKE-3d9a01bb"

fault_server service --log-bodies

python3 - "$T/coverage.jsonl" <<'PY'
import json, sys
words = ["apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon", "ocean", "candle", "forest", "silver",
         "garden", "rocket", "violet", "marble"]
with open(sys.argv[1], "w") as f:
    for i, w in enumerate(words * 2):
        cat = "alpha" if i % 4 else "beta"  # a quarter of the records: the category the student fails
        f.write(json.dumps({"id": f"{cat}-{i:02d}", "category": cat, "messages": [
            {"role": "user", "content": f"Category {cat}: write the word {w} backwards, record {i}."},
            {"role": "assistant", "content": f"{w[::-1]} ({i})"}]}) + "\n")
PY
cat >"$T/check.py" <<'PY'
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    beta = "Category beta" in r["prompt"]
    print(json.dumps({"id": r["id"], "score": 0 if beta else 1, "reason": "the beta rule was not followed" if beta else "fine"}))
PY
config() {  # config FILE DIR STRATEGY [extra judge lines]
  cat >"$1" <<YAML
run:
  dir: $2
  coverage: $T/coverage.jsonl
  test_ratio: 0.25
  max_rounds: 2
  probe: 100
  ceiling: false
  samples: 1
student:
  model: $SRC/tests/fixtures/tiny/llama.gguf
  threads: 1
  train: {epochs: 1, lr: 0.01, tokens_per_step: 256, max_len: 128, dropout: 0}
  infer: {max_tokens: 12, temperature: 0.8, seed: 3, batch: 8}
service:
  provider: openai
  base_url: http://127.0.0.1:$PORT/v1
  model: teacher-1
  api_key_env: LD_FAKE_KEY
  price_in_per_mtok: 1
  price_out_per_mtok: 2
  concurrency: 4
task:
  description: Write the word backwards.
  check:
    command: python3 $T/check.py
synth:
  calls: 12
  pairs_per_call: 3
  strategy: $3
judge:
  method: metric
  pass: checker >= 0.99
YAML
}

config "$T/targeted.yaml" "$T/targeted" targeted
"$BIN" run "$T/targeted.yaml" >"$T/targeted.out" 2>&1 && grep -q "pass rule (checker >= 0.99): not met" "$T/targeted.out" &&
  ok "a two-round run scored by a checker alone" || bad "targeted run: $(tail -5 "$T/targeted.out")"
cp "$T/service.log" "$T/targeted.log"
: >"$T/service.log"
config "$T/uniform.yaml" "$T/uniform" uniform
"$BIN" run "$T/uniform.yaml" >"$T/uniform.out" 2>&1 && ok "the same run with uniform synthesis" || bad "uniform run: $(tail -5 "$T/uniform.out")"
cp "$T/service.log" "$T/uniform.log"

python3 - "$T" <<'PY' && ok "targeted synthesis draws its seeds from the failing category, with the critique; uniform does not" || bad "targeting"
import json, re, sys
T = sys.argv[1]
seeds = [json.loads(l) for l in open(f"{T}/targeted/data/coverage.train.jsonl")]
base = sum(s["category"] == "beta" for s in seeds) / len(seeds)
def seed_categories(log):
    cats, critiques = [], 0
    for line in open(log):
        e = json.loads(line)
        text = e["body"]["messages"][-1]["content"]
        if '{"contents":' not in text:
            continue
        m = re.search(r"<instruction>\nCategory (\w+):", text)
        cats.append(m.group(1))
        critiques += "What was wrong with its answer: the student answered" in text and "the beta rule was not followed" in text
    return cats, critiques
t, tc = seed_categories(f"{T}/targeted.log")
u, uc = seed_categories(f"{T}/uniform.log")
share_t, share_u = t.count("beta") / len(t), u.count("beta") / len(u)
print(f"beta: {base:.2f} of the seeds; {share_t:.2f} of targeted calls ({len(t)}), {share_u:.2f} of uniform calls ({len(u)})")
assert len(t) == len(u) == 12, (len(t), len(u))
assert share_t > 0.5 and share_t >= base + 0.25, (share_t, base)  # most seeds from the failing category
assert share_u < share_t and uc == 0, (share_u, uc)
assert tc == 6, (tc, t)  # synth.target_share 0.5 of 12 calls carry the student's answer and the checker's critique
kept = [json.loads(l) for l in open(f"{T}/targeted/data/round-02.synth.jsonl")]
lineage = [r for r in kept if "probe_id" in r]
assert lineage and all(r["probe_id"].startswith("beta") and r["probe_score"] == 0 and "beta rule" in r["critique"] for r in lineage), kept
PY

python3 - "$T" <<'PY' && ok "no test prompt, reference or answer in any synthesis request (0 found)" || bad "test data leaked into synthesis"
import json, sys
T = sys.argv[1]
secret, seen = set(), set()  # seen: strings the training side holds too (a tiny model's answers repeat), no leak
for run in ("targeted", "uniform"):
    for l in open(f"{T}/{run}/data/coverage.test.jsonl"):
        r = json.loads(l)
        secret |= {m["content"] for m in r["messages"]}
    for l in open(f"{T}/{run}/data/coverage.train.jsonl"):
        seen |= {m["content"] for m in json.loads(l)["messages"]}
    for t in (1, 2):
        secret |= {a["text"] for a in map(json.loads, open(f"{T}/{run}/rounds/{t:02d}/infer.jsonl")) if len(a["text"].strip()) >= 8}
    if run == "targeted":
        seen |= {a["text"] for a in map(json.loads, open(f"{T}/{run}/rounds/01/probe.infer.jsonl"))}
secret -= seen
found = 0
for log in ("targeted.log", "uniform.log"):
    for line in open(f"{T}/{log}"):
        text = json.loads(line)["body"]["messages"][-1]["content"]
        found += sum(s in text for s in secret)
print(f"{len(secret)} test strings, {found} found in requests")
assert found == 0
PY

python3 - "$T/targeted" <<'PY' && ok "metrics and report: each condition's value, the probe, what was targeted" || bad "metrics/report"
import json, sys
d = sys.argv[1]
m = json.load(open(f"{d}/rounds/01/metrics.json"))
assert m["method"] == "metric" and "similarity" not in m and m["pass"] is False, m
c = m["rule"]["conditions"][0]  # one condition: a group of one
assert c["condition"] == "checker >= 0.99" and 0 < c["value"] < 1 and c["held"] is False, m["rule"]
s = [json.loads(l) for l in open(f"{d}/rounds/01/probe.scores.jsonl")]
assert all((x["score"] == 0) == x["id"].startswith("beta") for x in s), s
h = open(f"{d}/report.html").read()
for text in ("The pass rule", "checker &gt;= 0.99", "What synthesis aimed at", "the beta rule was not followed"):
    assert text in h, text
PY
grep -c '"similarity_assessment"' "$T/targeted.log" | grep -qx 0 && ok "judge.method metric pays no judge request" || bad "judge requests sent"

# bad rules are refused at --check, naming the key and the reason
try_rule() {  # try_rule WHAT EXPECTED SED
  sed "$3" "$T/targeted.yaml" >"$T/bad.yaml"
  out=$("$BIN" run "$T/bad.yaml" --check 2>&1)
  [ $? -ne 0 ] && grep -q -- "$2" <<<"$out" && ok "run --check refuses $1" || bad "$1: $out"
}
try_rule "an unknown measure" "'judge.pass' is \"exactness >= 0.9\": 'exactness' is not a measure" 's/pass: checker >= 0.99/pass: exactness >= 0.9/'
try_rule "a judge score without a judge" "judge.method is metric" 's/pass: checker >= 0.99/pass: similarity >= 90/'
try_rule "a share out of range" "out of range" 's/pass: checker >= 0.99/pass: checker >= 99/'
try_rule "a check that is not configured" "needs task.check.regex" 's/pass: checker >= 0.99/pass: regex >= 0.9/'
try_rule "method metric with no rule" "must say what passes" '/pass: checker/d'
try_rule "targeted synthesis without a probe" "needs a probe" 's/probe: 100/probe: 0/'
try_rule "a bad regex" "'task.check.regex' does not compile" 's|    command: python3.*|    regex: "([0-9"|'

# a checker that crashes fails the judge stage, naming it; never a silent pass
printf 'import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n' >"$T/crash.py"
sed "s|python3 $T/check.py|python3 $T/crash.py|; s|dir: $T/targeted|dir: $T/crash|" "$T/targeted.yaml" >"$T/crash.yaml"
"$BIN" run "$T/crash.yaml" >"$T/crash.out" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "task.check.command 'python3 $T/crash.py' was killed by signal 11" "$T/crash.out" &&
  ! grep -q '"pass": *true' "$T/crash/rounds/01/metrics.json" 2>/dev/null &&
  ok "a checker that crashes stops the run with its name" || bad "crashing checker (rc $rc): $(tail -3 "$T/crash.out")"

finish
