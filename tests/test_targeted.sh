#!/usr/bin/env bash
# The loop learns from its failures (host/answer_scores.c, host/synth.c, the probe stage in host/run.c): a task with
# two categories whose checker fails every "beta" answer, scored by metric rules alone (no judge request). The
# targeted synthesis of round 2 aims half its calls at beta's failures and so draws most of its seeds from beta
# (against beta's base rate among the seeds),
# shows the critique, and names the probe item in each pair's lineage; a uniform run on the same data does not
# aim, but answers the probe each round too. The fault server's log of every request body holds no test prompt,
# reference or answer in any synthesis request. The checker decides from the prompt alone, so it verifies the
# synthetic pairs: the ones it refuses are dropped with its reason, and the report counts them, lists the probe items
# the targeted calls aimed at and every kept pair's item. An LLM judge's reasons reach the targeted prompts; under
# judge.method metric the ceiling is scored by the checker. Bad pass rules are refused at run --check; a checker that
# crashes stops the judge stage naming it, and one that crashes, hangs or prints garbage while verifying synthetic
# pairs stops the synthesis stage naming it.
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
for line in sys.stdin:  # it decides from the prompt alone (reference_free): it verifies synthetic pairs too
    r = json.loads(line)
    beta, odd = "Category beta" in r["prompt"], r["reference"] is None and " number 1:" in r["prompt"]
    why = "the beta rule was not followed" if beta else "item 1 is not wanted" if odd else "fine"
    print(json.dumps({"id": r["id"], "score": 0 if beta or odd else 1, "reason": why}))
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
    reference_free: true
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

python3 - "$T" <<'PY' && ok "verified synthesis: the pairs the checker refuses are dropped with its reason, counted in the ledger and the report" || bad "verified synthesis"
import json, sqlite3, sys
d = sys.argv[1] + "/targeted"
drop = [json.loads(l) for l in open(f"{d}/data/round-02.dropped.jsonl")]
failed = [x for x in drop if x["reason"].startswith("failed the task's checker")]
# the fault server writes a "number 1" pair in each of the 12 replies; the checker refuses exactly those
assert len(failed) == 12 and all(" number 1:" in x["instruction"] and "item 1 is not wanted" in x["reason"] for x in failed), failed
kept = [json.loads(l) for l in open(f"{d}/data/round-02.synth.jsonl")]
assert kept and not any(" number 1:" in r["messages"][0]["content"] for r in kept), kept
db = sqlite3.connect(f"{d}/ledger.sqlite")
detail = json.loads(db.execute("select detail from stages where round = 2 and stage = 'synth'").fetchone()[0])
assert detail["failed_check"] == 12, detail
lines = open(f"{d}/report.md", errors="replace").read().splitlines()
at = next(i for i, l in enumerate(lines) if l.startswith("| round | trained on"))
assert lines[at].split("|")[-2].strip() == "failed the checker", lines[at]
row = next(l for l in lines[at:] if l.startswith("| 2 |"))
assert row.split("|")[-2].strip() == "12", row
assert "<th>failed the task's checker</th>" in open(f"{d}/report.html", errors="replace").read()
PY

python3 - "$T" <<'PY' && ok "the report lists exactly the probe items the targeted calls aimed at, every kept pair's item, and the probe's values" || bad "report: targeted items, lineage, probe values"
import collections, json, re, sys
T = sys.argv[1]
d = f"{T}/targeted"
lines = open(f"{d}/report.md", errors="replace").read().splitlines()
def table(start):  # the rows of the first Markdown table from line index start, as lists of cells
    i = next(k for k in range(start, len(lines)) if lines[k].startswith("|")) + 2
    rows = []
    while i < len(lines) and lines[i].startswith("|"):
        rows.append([c.strip() for c in lines[i].strip("|").split(" | ")])
        i += 1
    return rows, i
by_text = {json.loads(l)["messages"][0]["content"]: json.loads(l)["id"] for l in open(f"{d}/data/coverage.train.jsonl")}
aimed = collections.Counter()
for line in open(f"{T}/targeted.log"):
    text = json.loads(line)["body"]["messages"][-1]["content"]
    if "What was wrong with its answer:" in text:
        aimed[by_text[re.search(r"<instruction>\n(.*?)\n</instruction>", text, re.S).group(1)]] += 1
kept = [json.loads(l) for l in open(f"{d}/data/round-02.synth.jsonl")]
at = next(i for i, l in enumerate(lines) if l.startswith("### Round 2: 6 of 12 calls targeted at the round 1 probe"))
rows, end = table(at)
assert {r[0]: int(r[2]) for r in rows} == dict(aimed) and len(rows) == len(aimed), (rows, aimed)
for item, score, calls, critique, n_kept in rows:
    assert score == "0.00" and critique.startswith("the student answered"), (item, critique)
    assert int(n_kept) == sum(r.get("probe_id") == item for r in kept), (item, n_kept)
lineage, _ = table(end)
assert [(r[0], r[3]) for r in lineage] == [(r["id"], r["probe_id"]) for r in kept if "probe_id" in r], lineage
assert len(lineage) > 8  # every kept pair, not the first few
at = next(i for i, l in enumerate(lines) if l == "## The pass rule")
rule, _ = table(at)
for t, row in zip((1,), rule):  # round 2 is the last: no probe after it
    c = json.load(open(f"{d}/rounds/{t:02d}/probe.metrics.json"))["rule"]["conditions"][0]
    assert row[0] == str(t) and row[4] == f"{c['value']:.3g}", (row, c)
PY

python3 - "$T/uniform" <<'PY' && ok "a uniform run answers the probe too after a round that goes on (not after its last), and its report shows the probe's values" || bad "uniform probe"
import json, os, sys
d = sys.argv[1]
m = json.load(open(f"{d}/rounds/01/probe.metrics.json"))
assert m["rule"]["conditions"][0]["value"] == 0.75, m
assert not os.path.exists(f"{d}/rounds/02/probe.metrics.json")  # the last round: no next synthesis to aim, no judge to pay
md = open(f"{d}/report.md", errors="replace").read()
assert "| 1 | checker >= 0.99 | 0.75 | no | 0.75 |" in md and "| 2 | checker >= 0.99 | 0.75 | no |  |" in md, md
assert "What synthesis aimed at" not in md
PY

# an LLM judge's critique (the fault server's judge reasons) is what a targeted synthesis prompt shows
sed "s|dir: $T/targeted|dir: $T/llm|; s|  method: metric|  method: llm\n  judgments_per_answer: 1|; /pass: checker/d" "$T/targeted.yaml" >"$T/llm.yaml"
: >"$T/service.log"
"$BIN" run "$T/llm.yaml" >"$T/llm.out" 2>&1 || bad "llm-judged run: $(tail -5 "$T/llm.out")"
python3 - "$T" <<'PY' && ok "judge.method llm: the judge's reasons reach every targeted synthesis prompt" || bad "llm judge critique"
import json, sqlite3, sys
T = sys.argv[1]
detail = json.loads(sqlite3.connect(f"{T}/llm/ledger.sqlite").execute("select detail from stages where round = 2 and stage = 'synth'").fetchone()[0])
n = 0
for line in open(f"{T}/service.log"):
    text = json.loads(line)["body"]["messages"][-1]["content"]
    if "What was wrong with its answer:" in text:
        assert "What was wrong with its answer: similarity: compared with the reference; precision: checked the instruction" in text, text
        n += 1
assert n == detail["targeted_calls"] == len(detail["targeted_seeds"]) > 0, (n, detail)
PY

# judge.method metric scores the ceiling by the metric too: the service's answers checked, no judge request paid
sed "s|dir: $T/targeted|dir: $T/ceiling|; s|ceiling: false|ceiling: true|; s|max_rounds: 2|max_rounds: 1|" "$T/targeted.yaml" >"$T/ceiling.yaml"
: >"$T/service.log"
"$BIN" run "$T/ceiling.yaml" >"$T/ceiling.out" 2>&1 || bad "ceiling run: $(tail -5 "$T/ceiling.out")"
python3 - "$T" <<'PY' && ok "judge.method metric: the ceiling is scored by the checker, and no judge request is paid" || bad "ceiling under metric"
import json, sys
T = sys.argv[1]
test = [json.loads(l) for l in open(f"{T}/ceiling/data/coverage.test.jsonl")]
m = json.load(open(f"{T}/ceiling/data/ceiling.metrics.json"))
c = m["rule"]["conditions"][0]
alpha = sum(r["category"] == "alpha" for r in test) / len(test)  # the checker passes every alpha prompt's answer
assert m["method"] == "metric" and "similarity" not in m and c["condition"] == "checker >= 0.99" and c["value"] == alpha, (m, alpha)
bodies = [json.loads(l)["body"]["messages"][-1]["content"] for l in open(f"{T}/service.log")]
assert len(bodies) == len(test) and not any("similarity_assessment" in b for b in bodies), bodies
md = open(f"{T}/ceiling/report.md", errors="replace").read()
assert f"| service (ceiling) | checker >= 0.99 | {alpha:.3g} |" in md, md
PY

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


# a checker that crashes, hangs past its limit or prints garbage while it verifies synthetic pairs stops the
# synthesis stage with an error naming it (nothing kept, nothing trained on); fixed, the rerun goes on from there
cat >"$T/bad.py" <<'PY'
import json, os, re, signal, sys, time
mode = open(sys.argv[1]).read().strip()
items = [json.loads(l) for l in sys.stdin]
if any(re.fullmatch(r"c\d{4}-\d+", r["id"]) for r in items):  # synthetic pairs, not the student's answers
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "hang":
        time.sleep(60)
    if mode == "garbage":
        print("the pairs look fine to me")
        sys.exit(0)
for r in items:
    print(json.dumps({"id": r["id"], "score": 0 if "Category beta" in r["prompt"] else 1}))
PY
sed "s|python3 $T/check.py|python3 $T/bad.py $T/bad.mode|; s|    reference_free: true|    reference_free: true\n    timeout_s: 3|; s|dir: $T/targeted|dir: $T/bad|" \
  "$T/targeted.yaml" >"$T/bad.yaml"
for mode in "crash|crashes|' was killed by signal 11" "hang|hangs past its limit|' ran past its 3 s limit" \
            "garbage|prints garbage|': output line 1 is not {"; do
  IFS='|' read -r name what says <<<"$mode"
  echo "$name" >"$T/bad.mode"
  "$BIN" run "$T/bad.yaml" >"$T/bad.out" 2>&1
  rc=$?
  status=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(\"select status from stages where round = 2 and stage = 'synth'\").fetchone()[0])" "$T/bad/ledger.sqlite")
  [ $rc -ne 0 ] && [ "$status" = failed ] && grep -q "synthesis: the task's checker could not verify" "$T/bad.out" &&
    grep -qF "task.check.command 'python3 $T/bad.py $T/bad.mode$says" "$T/bad.out" &&
    [ ! -e "$T/bad/data/round-02.synth.jsonl" ] && [ ! -e "$T/bad/rounds/02/train.jsonl" ] &&
    ok "a checker that $what while verifying synthetic pairs stops the synthesis stage naming it" ||
    bad "$name in synthesis (rc $rc, synth $status): $(tail -3 "$T/bad.out")"
done
echo ok >"$T/bad.mode"
"$BIN" run "$T/bad.yaml" >"$T/bad.out" 2>&1 && [ -s "$T/bad/data/round-02.synth.jsonl" ] && [ -s "$T/bad/rounds/02/metrics.json" ] &&
  ok "the checker fixed, the rerun verifies the pairs and goes on" || bad "rerun after the checker was fixed: $(tail -3 "$T/bad.out")"
finish
