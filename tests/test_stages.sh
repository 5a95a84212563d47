#!/usr/bin/env bash
# synth and judge end to end against the local fault server: kill -9 in the middle, rerun, and the records
# and metrics equal an uninterrupted run's while the server answered no request twice; bad configs are
# refused before any work; a recognisable fake key is found in no file written.
# Usage: test_stages.sh BUILD_DIR SOURCE_DIR
source "$2/tests/harness.sh"
export LD_FAKE_KEY="sk-llamaduo-FAKE-9d2e41b7"

server() { fault_server "$1" --latency 0.08 --liveness 0.5; }  # server NAME: logs to $T/NAME.log; sets PORT
config() {  # config FILE PORT
  cat >"$1" <<YAML
service:
  provider: anthropic
  base_url: http://127.0.0.1:$2
  model: teacher-1
  api_key_env: LD_FAKE_KEY
  price_in_per_mtok: 3
  price_out_per_mtok: 15
  concurrency: 2
  max_attempts: 4
task:
  description: Convert free-text dates to ISO 8601 dates.
synth:
  calls: 30
  pairs_per_call: 3
judge:
  judgments_per_answer: 3
  threshold: 60
YAML
}
for i in $(seq 12); do
  echo "{\"id\": \"s$i\", \"messages\": [{\"role\": \"user\", \"content\": \"Convert day $i of May 2024 to ISO format\"}, {\"role\": \"assistant\", \"content\": \"2024-05-$(printf %02d "$i")\"}]}"
done >"$T/seeds.jsonl"
for i in $(seq 8); do
  echo "{\"id\": \"t$i\", \"messages\": [{\"role\": \"user\", \"content\": \"Convert day $i of June 2023 to ISO format\"}, {\"role\": \"assistant\", \"content\": \"2023-06-0$i\"}]}"
done >"$T/test.jsonl"
echo '{"id": "t9", "messages": [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "The capital of France is Paris."}]}' >>"$T/test.jsonl"
for i in $(seq 9); do
  for k in 0 1; do echo "{\"id\": \"t$i\", \"sample\": $k, \"text\": \"answer $k for t$i$([ "$i$k" = 31 ] && echo ' FAULTS:badscore')\"}"; done
done >"$T/answers.jsonl"
# the reply time differs between two runs by nature
strip() { python3 -c "import json,sys; [print(json.dumps({k:v for k,v in json.loads(l).items() if k!='created'})) for l in open(sys.argv[1])]" "$1"; }
answered_twice() {  # clean answers given twice for the same request in a server log
  python3 -c "
import json, sys, collections
c = collections.Counter(e['hash'] for e in map(json.loads, open(sys.argv[1])) if e['fault'] == 'none')
print(sum(1 for v in c.values() if v > 1))" "$1"
}

# 1. the uninterrupted runs
server clean; config "$T/clean.yaml" "$PORT"
"$BIN" synth --config "$T/clean.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$T/clean" >"$T/clean-synth.out" 2>&1 &&
  ok "synth runs" || bad "synth failed: $(tail -3 "$T/clean-synth.out")"
"$BIN" judge --config "$T/clean.yaml" --test "$T/test.jsonl" --answers "$T/answers.jsonl" --out-dir "$T/clean/r1" >"$T/clean-judge.out" 2>&1 &&
  ok "judge runs" || bad "judge failed: $(tail -3 "$T/clean-judge.out")"
grep -q "contaminated" "$T/clean/round-01.dropped.jsonl" && grep -q "duplicate of" "$T/clean/round-01.dropped.jsonl" &&
  grep -q "invalid: empty instruction" "$T/clean/round-01.dropped.jsonl" && ok "dropped pairs carry their reasons" || bad "dropped reasons"
grep -q '"seed_id"' "$T/clean/round-01.synth.jsonl" && grep -q '"prompt_hash"' "$T/clean/round-01.synth.jsonl" &&
  grep -q '"generator":"teacher-1"' "$T/clean/round-01.synth.jsonl" && ok "records carry lineage" || bad "lineage missing"

# 2. the same runs killed with -9 in the middle, then rerun. A request whose answer was in transit at the
#    instant of a kill cannot be recorded by anyone; the server counts an answer as received once the client
#    lived 500 ms past it (--liveness: generous, as a loaded machine can take a while between receiving an answer
#    and recording it), and no such answer may be asked for again.
server crash; config "$T/crash.yaml" "$PORT"
for stage in synth judge; do
  for attempt in 1 2; do  # kill twice at different points, then let it finish
    if [ $stage = synth ]; then
      "$BIN" synth --config "$T/crash.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$T/crash" >>"$T/crash-$stage.out" 2>&1 &
    else
      "$BIN" judge --config "$T/crash.yaml" --test "$T/test.jsonl" --answers "$T/answers.jsonl" --out-dir "$T/crash/r1" >>"$T/crash-$stage.out" 2>&1 &
    fi
    pid=$!; sleep "0.$((3 + attempt * 2))"; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  done
  if [ $stage = synth ]; then
    "$BIN" synth --config "$T/crash.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$T/crash" >>"$T/crash-$stage.out" 2>&1
  else
    "$BIN" judge --config "$T/crash.yaml" --test "$T/test.jsonl" --answers "$T/answers.jsonl" --out-dir "$T/crash/r1" >>"$T/crash-$stage.out" 2>&1
  fi
  [ $? = 0 ] && ok "$stage completes after two kill -9" || bad "$stage rerun failed: $(tail -3 "$T/crash-$stage.out")"
done
cmp -s <(strip "$T/clean/round-01.synth.jsonl") <(strip "$T/crash/round-01.synth.jsonl") && ok "synth: same records as the uninterrupted run" || bad "synth records differ after resume"
cmp -s "$T/clean/round-01.dropped.jsonl" "$T/crash/round-01.dropped.jsonl" && ok "synth: same drops" || bad "synth drops differ"
cmp -s "$T/clean/r1/judge.jsonl" "$T/crash/r1/judge.jsonl" && ok "judge: same judgments" || bad "judge judgments differ"
cmp -s "$T/clean/r1/metrics.json" "$T/crash/r1/metrics.json" && ok "judge: same metrics" || bad "metrics differ: $(diff "$T/clean/r1/metrics.json" "$T/crash/r1/metrics.json" | head -4)"
sleep 1  # answers are logged once the client outlived --liveness
[ "$(answered_twice "$T/crash.log")" = 0 ] && ok "no request answered twice across the crashes" || bad "$(answered_twice "$T/crash.log") requests answered twice"
grep -q '"key_ok": false' "$T/clean.log" "$T/crash.log" && bad "a request arrived without the key" || ok "every request carried the key from the environment"

# 3. several judges: per-judge results and their agreement
sed 's/^judge:$/judge:\n  services:\n    - {provider: gemini, base_url: "http:\/\/127.0.0.1:'"$(cat "$T/clean.port")"'", model: judge-a, api_key_env: LD_FAKE_KEY}\n    - {provider: openai, base_url: "http:\/\/127.0.0.1:'"$(cat "$T/clean.port")"'\/v1", model: judge-b, api_key_env: LD_FAKE_KEY}/' \
  "$T/clean.yaml" >"$T/judges.yaml"
"$BIN" judge --config "$T/judges.yaml" --test "$T/test.jsonl" --answers "$T/answers.jsonl" --out-dir "$T/judges" >"$T/judges.out" 2>&1 &&
  ok "two judges run" || bad "two judges failed: $(tail -3 "$T/judges.out")"
python3 - "$T/judges" <<'PY' && ok "per-judge files, agreement and combined pass rule" || bad "multi-judge metrics"
import json, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "metrics.json")))
assert [j["model"] for j in m["judges"]] == ["judge-a", "judge-b"], m["judges"]
a = m["agreement"]
assert -1 <= a["similarity_pearson"] <= 1 and a["similarity_mean_abs_diff"] >= 0, a
means = [json.load(open(os.path.join(d, f"metrics-{k}.json")))["similarity"]["mean"] for k in (0, 1)]
assert abs(m["similarity"]["mean"] - sum(means) / 2) < 1e-9, (m["similarity"], means)  # every answer judged by both
assert m["pass"] == (m["similarity"]["mean"] >= 60 and m["precision"]["mean"] >= 60)
assert m["pass_rule"] == "similarity.mean >= 60 and precision.mean >= 60", m["pass_rule"]
assert os.path.exists(os.path.join(d, "judge-0.jsonl")) and os.path.exists(os.path.join(d, "judge-1.jsonl"))
PY

# 3b. judge.method both: the judge and the metrics, a rule over both; metric: no judge request at all
sed 's/^  threshold: 60$/  method: both\n  pass: {all: [similarity.median >= 1, {any: [exact_match >= 0.5, rouge_l >= 0.2]}]}/' "$T/clean.yaml" >"$T/both.yaml"
"$BIN" judge --config "$T/both.yaml" --test "$T/test.jsonl" --answers "$T/answers.jsonl" --out-dir "$T/both" >"$T/both.out" 2>&1 &&
python3 - "$T/both" <<'PY' && ok "judge.method both: a rule over judge scores and metrics, each condition's value in metrics.json" || bad "method both: $(tail -3 "$T/both.out")"
import json, sys
d = sys.argv[1]
m = json.load(open(d + "/metrics.json"))
assert m["method"] == "both" and m["similarity"]["answers"] > 0, m
top = m["rule"]
assert top["combine"] == "all" and top["conditions"][0]["condition"] == "similarity.median >= 1", top
inner = top["conditions"][1]
assert inner["combine"] == "any" and [c["value"] for c in inner["conditions"]] == [m["exact_match"], m["rouge_l"]], inner
held = m["similarity"]["median"] >= 1 and (m["exact_match"] >= 0.5 or m["rouge_l"] >= 0.2)
assert m["pass"] == held == top["held"], (m["pass"], held)
s = [json.loads(l) for l in open(d + "/scores.jsonl")]
assert len(s) == 18 and all("similarity" in x and "exact_match" in x and x["critique"].startswith("similarity:") for x in s), s[0]
PY
# (the server logs an answer --liveness seconds after sending it, so "no request" is judged by arrival time, not line count)
t0=$(python3 -c "import time; print(time.time())")
sed 's/^  threshold: 60$/  method: metric\n  pass: exact_match >= 0.9/' "$T/clean.yaml" >"$T/metric.yaml"
"$BIN" judge --config "$T/metric.yaml" --test "$T/test.jsonl" --answers "$T/answers.jsonl" --out-dir "$T/metric" >"$T/metric.out" 2>&1 &&
  grep -q "below the pass rule (exact_match >= 0.9)" "$T/metric.out" && [ ! -e "$T/metric/judge.jsonl" ] && sleep 0.6 &&
  python3 -c "import json, sys; sys.exit(any(json.loads(l)['t'] >= $t0 for l in open('$T/clean.log')))" &&
  ok "judge.method metric: scored without a single request" || bad "method metric: $(tail -3 "$T/metric.out")"

# 4. answers that are errors (a request that failed) are never sent to the judge; a judge that is down fails the
#    stage at once with the service, its URL and the error, and writes no metrics
{ cat "$T/answers.jsonl"; echo '{"id": "t2", "sample": 2, "text": "", "error": "Could not connect to server"}'; } >"$T/answers-err.jsonl"
"$BIN" judge --config "$T/clean.yaml" --test "$T/test.jsonl" --answers "$T/answers-err.jsonl" --out-dir "$T/err" >"$T/err.out" 2>&1 &&
python3 - "$T/err" <<'PY' && ok "an answer that is an error is not judged, and counted apart" || bad "error answers: $(tail -3 "$T/err.out")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1] + "/judge.jsonl")]
mine = [l for l in lines if l["id"] == "t2" and l["sample"] == 2]
assert len(mine) == 3 and all(l["asked"] == 0 and not l["valid"] and l["error"].startswith("not judged: the answer is an error") for l in mine), mine
assert all(l["asked"] >= 1 for l in lines if l not in mine)
m = json.load(open(sys.argv[1] + "/metrics.json"))
assert m["failed_answers"] == 1 and m["answers"] == 19 and m["invalid_judgments"] == 0, m
PY
DOWN=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
sed "s|127.0.0.1:[0-9]*|127.0.0.1:$DOWN|; s|max_attempts: 4|max_attempts: 2|" "$T/clean.yaml" >"$T/down.yaml"
"$BIN" judge --config "$T/down.yaml" --test "$T/test.jsonl" --answers "$T/answers.jsonl" --out-dir "$T/down" >"$T/down.out" 2>&1; rc=$?
[ $rc = 1 ] && grep -q "judge: all 54 requests to teacher-1 (anthropic, http://127.0.0.1:$DOWN) failed.*: Couldn't connect to server" "$T/down.out" &&
  [ "$(grep -c "judge: pass" "$T/down.out")" = 0 ] && [ ! -e "$T/down/metrics.json" ] &&
  ok "a judge that is down fails the stage at once with its URL and error" || bad "judge down: rc $rc: $(tail -4 "$T/down.out")"

# 4. bad configs are refused before any work, naming the key
server bad; n_before=$(wc -l <"$T/bad.log" 2>/dev/null || echo 0)
try_config() {  # try_config NAME EXPECTED-TEXT YAML
  printf '%s\n' "$3" >"$T/bad.yaml"
  "$BIN" synth --config "$T/bad.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$T/bad" >"$T/bad.out" 2>&1
  rc=$?
  if [ $rc != 0 ] && grep -q "$2" "$T/bad.out"; then ok "bad config refused: $1"; else bad "bad config $1: rc $rc: $(cat "$T/bad.out")"; fi
}
base="service:
  provider: openai
  base_url: http://127.0.0.1:$PORT/v1
  model: m
task:
  description: d"
try_config "unknown key" "unknown key 'synth.callz'" "$base
synth:
  callz: 3"
try_config "wrong type" "'synth.calls' must be a number" "$base
synth:
  calls: many"
try_config "out of range" "'judge.threshold' must be a number in \[1, 100\], not 150" "$base
judge:
  threshold: 150"
try_config "waiting out any Retry-After without a deadline" "needs 'service.deadline_s'" "service:
  provider: openai
  model: m
  long_retry_after: wait
task:
  description: d"
try_config "unknown choice" "'service.invalid_utf8' must be one of drop|repair, not 'ignore'" "service:
  provider: openai
  model: m
  invalid_utf8: ignore
task:
  description: d"
try_config "budget of 0" "budget_usd' is 0" "service:
  provider: openai
  model: m
  budget_usd: 0
task:
  description: d"
try_config "unknown provider" "'service.provider' must be one of openai|anthropic|gemini, not 'openia'" "service:
  provider: openia
  model: m
task:
  description: d"
try_config "broken YAML" "bad.yaml: line" "service: [unclosed"
try_config "missing task" "missing 'task'" "service:
  provider: openai
  model: m"
[ "$(wc -l <"$T/bad.log" 2>/dev/null || echo 0)" = "$n_before" ] && ok "no request sent for a bad config" || bad "a bad config sent requests"
unset LD_FAKE_KEY
"$BIN" synth --config "$T/clean.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$T/nokey" --no-cache >"$T/nokey.out" 2>&1
[ $? != 0 ] && grep -q "LD_FAKE_KEY" "$T/nokey.out" && ok "missing key variable named" || bad "missing key: $(cat "$T/nokey.out")"

# 5. the key is in no file written (outputs, caches, logs)
if grep -rqa "sk-llamaduo-FAKE-9d2e41b7" "$T"; then bad "the API key reached disk: $(grep -rla sk-llamaduo-FAKE-9d2e41b7 "$T")"; else ok "the key is in no file"; fi

finish
