#!/usr/bin/env bash
# service.batch: true (host/batch.c) against the fault server's OpenAI Batch API, Anthropic Message Batches and
# Gemini batch mode (tests/fault_batches.py), each: synthesis
# and judging through batches end with the same records, judgments and metrics as the synchronous path, at the
# batch price; expired and partly failed batches finish with nothing lost (the rest resubmitted); failed and
# cancelled batches are clear errors; a run killed while waiting attaches to its batch when rerun (no new
# submission, nothing paid twice); replies already cached are not submitted again.
# Usage: test_batch.sh BUILD_DIR SOURCE_DIR
source "$2/tests/harness.sh"
export LD_FAKE_KEY="sk-llamaduo-FAKE-b47c0e12"

fault_server service --batch-page-size 2 --batch-slow 2 --fail-lists "$T/fail-lists"  # lists read page by page

for i in $(seq 10); do
  echo "{\"id\": \"s$i\", \"messages\": [{\"role\": \"user\", \"content\": \"Convert day $i of May 2024 to ISO format\"}, {\"role\": \"assistant\", \"content\": \"2024-05-$(printf %02d "$i")\"}]}"
done >"$T/seeds.jsonl"
for i in $(seq 6); do
  echo "{\"id\": \"t$i\", \"messages\": [{\"role\": \"user\", \"content\": \"Convert day $i of June 2023 to ISO format\"}, {\"role\": \"assistant\", \"content\": \"2023-06-0$i\"}]}"
done >"$T/test.jsonl"
for i in $(seq 6); do for k in 0 1; do echo "{\"id\": \"t$i\", \"sample\": $k, \"text\": \"answer $k for t$i\"}"; done; done >"$T/answers.jsonl"
marked() {  # marked END: the answers with a marker the fault server's batches read (their end)
  sed "s/\"text\": \"answer/\"text\": \"BATCH:$1 answer/" "$T/answers.jsonl" >"$T/answers-$1.jsonl"
}
config() {  # config FILE BATCH [WIRE]
  local wire=${3:-openai} url="http://127.0.0.1:$PORT/v1"
  [ "$wire" != openai ] && url="http://127.0.0.1:$PORT"
  cat >"$1" <<YAML
service:
  provider: $wire
  base_url: $url
  model: teacher-1
  api_key_env: LD_FAKE_KEY
  price_in_per_mtok: 2
  price_out_per_mtok: 8
  batch: $2
  batch_poll_s: 0.05
  max_attempts: 3
task:
  description: Convert free-text dates to ISO 8601 dates.
synth:
  calls: 6
  pairs_per_call: 3
judge:
  judgments_per_answer: 2
YAML
}
strip() { python3 -c "import json,sys; [print(json.dumps({k:v for k,v in json.loads(l).items() if k!='created'})) for l in open(sys.argv[1])]" "$1"; }
for wire in openai anthropic gemini; do
  config "$T/$wire-sync.yaml" false $wire; config "$T/$wire-batch.yaml" true $wire
  n0=$(grep -c '"create"' "$T/service.log")
  for mode in sync batch; do
    d="$T/$wire-$mode"
    "$BIN" synth --config "$d.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$d" --round 2 >"$d.synth.out" 2>&1 &&
    "$BIN" judge --config "$d.yaml" --test "$T/test.jsonl" --answers "$T/answers.jsonl" --out-dir "$d" >"$d.judge.out" 2>&1 ||
      bad "$wire $mode stages: $(tail -3 "$d.synth.out" "$d.judge.out")"
  done
  diff <(strip "$T/$wire-sync/round-02.synth.jsonl") <(strip "$T/$wire-batch/round-02.synth.jsonl") >/dev/null &&
    diff "$T/$wire-sync/round-02.dropped.jsonl" "$T/$wire-batch/round-02.dropped.jsonl" >/dev/null &&
    diff "$T/$wire-sync/judge.jsonl" "$T/$wire-batch/judge.jsonl" >/dev/null &&
    ok "$wire: batch synthesis and judging write the same records, drops and judgments as the synchronous path" ||
    bad "$wire: batch vs sync differ"
  python3 - "$T" "$wire" "$n0" <<'PY' && ok "$wire: the same metrics, at the batch price (half), in two batches" || bad "$wire: metrics or price"
import json, sys
T, wire, n0 = sys.argv[1], sys.argv[2], int(sys.argv[3])
a, b = json.load(open(f"{T}/{wire}-sync/metrics.json")), json.load(open(f"{T}/{wire}-batch/metrics.json"))
for k in ("similarity", "precision", "exact_match", "pass"):
    assert a[k] == b[k], (k, a[k], b[k])
assert abs(b["cost_usd"] - a["cost_usd"] / 2) < 1e-9 and a["cost_usd"] > 0, (a["cost_usd"], b["cost_usd"])
calls = [e["batch_api"] for e in map(json.loads, open(f"{T}/service.log")) if "batch_api" in e]
assert calls.count("create") - n0 == 2 and "poll" in calls and "download" in calls, calls
PY

  # expired and partly failed batches: what finished is kept, the rest goes in a new batch, nothing is lost
  for end in expired partial; do
    marked $end
    "$BIN" judge --config "$T/$wire-batch.yaml" --test "$T/test.jsonl" --answers "$T/answers-$end.jsonl" --out-dir "$T/$wire-$end" \
      >"$T/$wire-$end.out" 2>&1 &&
    python3 - "$T/$wire-$end" "$T/$wire-$end.out" <<'PY' && ok "$wire: a batch that ends $end: the rest resubmitted, every judgment made" ||
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1] + "/judge.jsonl")]
assert len(lines) == 24 and all(l["valid"] for l in lines), [l for l in lines if not l["valid"]][:2]
out = open(sys.argv[2]).read()
assert "submitted again" in out, out
PY
      bad "$wire $end: $(tail -4 "$T/$wire-$end.out")"
  done
  # batch_unanswered: sync — what an expired batch left is sent one by one, every judgment made
  sed 's/  batch_poll_s: 0.05/  batch_poll_s: 0.05\n  batch_unanswered: sync/' "$T/$wire-batch.yaml" >"$T/$wire-sync-rest.yaml"
  sed 's/"text": "BATCH:expired answer/"text": "BATCH:expired rest: answer/' "$T/answers-expired.jsonl" >"$T/answers-rest.jsonl"
  "$BIN" judge --config "$T/$wire-sync-rest.yaml" --test "$T/test.jsonl" --answers "$T/answers-rest.jsonl" --out-dir "$T/$wire-rest" \
    >"$T/$wire-rest.out" 2>&1 && grep -q "sent one by one at the full price" "$T/$wire-rest.out" &&
    [ "$(grep -c '"valid":true' "$T/$wire-rest/judge.jsonl")" = 24 ] &&
    ok "$wire: batch_unanswered sync: what an expired batch left is sent one by one" || bad "$wire sync rest: $(tail -3 "$T/$wire-rest.out")"
  # failed and cancelled batches are errors naming the batch; the stage fails
  for end in failed cancelled; do
    marked $end
    "$BIN" judge --config "$T/$wire-batch.yaml" --test "$T/test.jsonl" --answers "$T/answers-$end.jsonl" --out-dir "$T/$wire-$end" \
      >"$T/$wire-$end.out" 2>&1
    rc=$?
    want=$([ "$end" = failed ] && echo "injected: the batch failed validation" || echo "was cancelled")
    [ $rc -ne 0 ] && grep -q -- "$want" "$T/$wire-$end.out" && ok "$wire: a $end batch is a clear error" ||
      bad "$wire $end (rc $rc): $(tail -3 "$T/$wire-$end.out")"
  done
done
cp "$T/openai-batch.yaml" "$T/batch.yaml"; cp "$T/openai-sync.yaml" "$T/sync.yaml"

# killed -9 while waiting on five batches, on each wire: the rerun attaches to all of them (found in the cache),
# creates no batch, and no request is answered twice (the fault server logs each batch's answers and each call)
for wire in openai anthropic gemini; do
  sed 's/batch_poll_s: 0.05/batch_poll_s: 1\n  batch_max_requests: 5/' "$T/$wire-batch.yaml" >"$T/$wire-kill.yaml"
  sed "s/\"text\": \"answer/\"text\": \"killed $wire: answer/" "$T/answers.jsonl" >"$T/answers-kill-$wire.jsonl"  # requests no other test sent
  from=$(wc -l <"$T/service.log")
  "$BIN" judge --config "$T/$wire-kill.yaml" --test "$T/test.jsonl" --answers "$T/answers-kill-$wire.jsonl" --out-dir "$T/$wire-kill" \
    >"$T/$wire-kill1.out" 2>&1 &
  pid=$!
  for _ in $(seq 200); do [ "$(grep -c "submitted (" "$T/$wire-kill1.out" 2>/dev/null)" = 5 ] && break; sleep 0.05; done
  kill -9 $pid; wait $pid 2>/dev/null
  n_create=$(grep -c '"create"' "$T/service.log")
  "$BIN" judge --config "$T/$wire-kill.yaml" --test "$T/test.jsonl" --answers "$T/answers-kill-$wire.jsonl" --out-dir "$T/$wire-kill" \
    >"$T/$wire-kill2.out" 2>&1 && [ "$(grep -c "attaching to" "$T/$wire-kill2.out")" = 5 ] &&
    [ "$(grep -c '"create"' "$T/service.log")" = "$n_create" ] && [ "$(grep -c '"valid":true' "$T/$wire-kill/judge.jsonl")" = 24 ] &&
    python3 - "$T/service.log" "$from" <<'PY' && ok "$wire: killed -9 while waiting on 5 batches, the rerun attaches to all: 0 new batches, 0 requests answered twice" ||
import json, sys
log = [json.loads(l) for l in open(sys.argv[1]).readlines()[int(sys.argv[2]):]]
creates = [e for e in log if e.get("batch_api") == "create"]
ids = [c for e in log if e.get("batch_api") == "results" for c in e["custom_ids"]]
hashes = [h for e in log if e.get("batch_api") == "results" for h in e["hashes"]]
calls = [e["hash"] for e in log if "batch_api" not in e and e.get("answered")]
assert len(creates) == 5 and sum(e["requests"] for e in creates) == 24, creates
assert len(ids) == 24 and len(set(ids)) == 24 and len(set(hashes)) == 24, (len(ids), len(set(ids)))
assert not calls, calls  # nothing batched went out synchronously either
PY
    bad "$wire kill: $(tail -3 "$T/$wire-kill2.out")"
  n_create=$(grep -c '"create"' "$T/service.log")
  "$BIN" judge --config "$T/$wire-kill.yaml" --test "$T/test.jsonl" --answers "$T/answers-kill-$wire.jsonl" --out-dir "$T/$wire-kill" \
    >"$T/$wire-kill3.out" 2>&1 && [ "$(grep -c '"create"' "$T/service.log")" = "$n_create" ] &&
    ok "$wire: a rerun after the batches ended is answered from the cache" || bad "$wire rerun: $(tail -2 "$T/$wire-kill3.out")"
done

# killed while waiting on a resubmitted batch (attempt 2): the rerun reads that batch, it sends nothing new
sed 's/batch_poll_s: 0.05/batch_poll_s: 1/' "$T/openai-batch.yaml" >"$T/resub.yaml"
sed 's/"text": "answer/"text": "BATCH:expired resub: answer/' "$T/answers.jsonl" >"$T/answers-resub.jsonl"
"$BIN" judge --config "$T/resub.yaml" --test "$T/test.jsonl" --answers "$T/answers-resub.jsonl" --out-dir "$T/resub" >"$T/resub1.out" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q "submitted again" "$T/resub1.out" 2>/dev/null && grep -c "submitted (" "$T/resub1.out" | grep -q 2 && break; sleep 0.05; done
kill -9 $pid; wait $pid 2>/dev/null
n_create=$(grep -c '"create"' "$T/service.log")
"$BIN" judge --config "$T/resub.yaml" --test "$T/test.jsonl" --answers "$T/answers-resub.jsonl" --out-dir "$T/resub" >"$T/resub2.out" 2>&1 &&
  grep -q "attaching to" "$T/resub2.out" && [ "$(grep -c '"valid":true' "$T/resub/judge.jsonl")" = 24 ] &&
  python3 - "$T/service.log" "$n_create" <<'PY' && ok "killed while waiting on a resubmitted batch, the rerun reads it: nothing sent twice" || bad "resubmitted: $(tail -3 "$T/resub2.out")"
import json, sys
creates = [e for e in map(json.loads, open(sys.argv[1])) if e.get("batch_api") == "create"]
new = creates[int(sys.argv[2]):]
# only what the attached batch itself left unanswered may go out again: never its requests
assert all(e["requests"] <= 6 for e in new), new
PY

# a download that fails every attempt fails the stage, and the rerun reads the same batch (not a new one)
sed 's/"text": "answer/"text": "BATCH:nodownload answer/' "$T/answers.jsonl" >"$T/answers-nodl.jsonl"
n_create=$(grep -c '"create"' "$T/service.log")
"$BIN" judge --config "$T/openai-batch.yaml" --test "$T/test.jsonl" --answers "$T/answers-nodl.jsonl" --out-dir "$T/nodl" >"$T/nodl1.out" 2>&1
rc=$?
"$BIN" judge --config "$T/openai-batch.yaml" --test "$T/test.jsonl" --answers "$T/answers-nodl.jsonl" --out-dir "$T/nodl" >"$T/nodl2.out" 2>&1 &&
  [ $rc -ne 0 ] && grep -q "content: HTTP 500" "$T/nodl1.out" && grep -q "attaching to" "$T/nodl2.out" &&
  [ "$(( $(grep -c '"create"' "$T/service.log") - n_create ))" = 1 ] && [ "$(grep -c '"valid":true' "$T/nodl/judge.jsonl")" = 24 ] &&
  ok "a result download that keeps failing fails the stage; the rerun reads the same batch" || bad "download (rc $rc): $(tail -2 "$T/nodl1.out" "$T/nodl2.out")"

# killed between sending a batch and recording it: found again in the provider's list (OpenAI by metadata, Anthropic
# by size and time, Gemini by display name), no second submission
for wire in openai anthropic gemini; do
  sed 's/batch_poll_s: 0.05/batch_poll_s: 1/' "$T/$wire-batch.yaml" >"$T/$wire-lost.yaml"
  # 5 answers, 10 judgments: a batch size no other test sends (Anthropic's list is searched by size and time)
  head -5 "$T/answers.jsonl" | sed "s/\"text\": \"answer/\"text\": \"lost $wire: answer/" >"$T/answers-lost-$wire.jsonl"
  sleep 1; since=$(date -u +%Y-%m-%dT%H:%M:%SZ)  # what the client marks before sending (earlier batches are older)
  "$BIN" judge --config "$T/$wire-lost.yaml" --test "$T/test.jsonl" --answers "$T/answers-lost-$wire.jsonl" --out-dir "$T/$wire-lost" \
    >"$T/$wire-lost1.out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "submitted" "$T/$wire-lost1.out" 2>/dev/null && break; sleep 0.05; done
  kill -9 $pid; wait $pid 2>/dev/null
  python3 - "$T/$wire-lost/cache.sqlite" "$since" <<'PY'  # as if the kill came before the batch's id was recorded
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("update batches set batch_id = '', state = ? where state = 'submitted'", ("submitting@" + sys.argv[2],))
db.commit()
PY
  # two newer batches (of 3 requests: not the lost one's size) put it on the list's second page (pages of 2)
  sed 's/batch_poll_s: 0.05/batch_poll_s: 0.05\n  batch_max_requests: 3/' "$T/$wire-batch.yaml" >"$T/$wire-filler.yaml"
  head -3 "$T/answers.jsonl" | sed "s/\"text\": \"answer/\"text\": \"filler $wire: answer/" >"$T/answers-filler-$wire.jsonl"
  "$BIN" judge --config "$T/$wire-filler.yaml" --test "$T/test.jsonl" --answers "$T/answers-filler-$wire.jsonl" --out-dir "$T/$wire-filler" \
    >"$T/$wire-filler.out" 2>&1 || bad "$wire filler: $(tail -3 "$T/$wire-filler.out")"
  # the list cannot be read (a 503 past every retry): an error, nothing submitted, the batch still looked for next time
  n_create=$(grep -c '"create"' "$T/service.log")
  touch "$T/fail-lists"
  "$BIN" judge --config "$T/$wire-lost.yaml" --test "$T/test.jsonl" --answers "$T/answers-lost-$wire.jsonl" --out-dir "$T/$wire-lost" \
    >"$T/$wire-lost2.out" 2>&1
  rc=$?
  rm -f "$T/fail-lists"
  [ $rc -ne 0 ] && grep -q "batch list could not be read" "$T/$wire-lost2.out" && [ "$(grep -c '"create"' "$T/service.log")" = "$n_create" ] &&
    python3 -c "import sqlite3, sys; assert sqlite3.connect(sys.argv[1]).execute(
        \"select count(*) from batches where state like 'submitting%'\").fetchone()[0] == 1" "$T/$wire-lost/cache.sqlite" &&
    ok "$wire: a batch list that cannot be read after a kill is an error: 0 new batches, the batch still looked for" ||
    bad "$wire list fails (rc $rc): $(tail -3 "$T/$wire-lost2.out")"
  from=$(wc -l <"$T/service.log")
  "$BIN" judge --config "$T/$wire-lost.yaml" --test "$T/test.jsonl" --answers "$T/answers-lost-$wire.jsonl" --out-dir "$T/$wire-lost" \
    >"$T/$wire-lost3.out" 2>&1 && grep -q "attaching to" "$T/$wire-lost3.out" && [ "$(grep -c '"create"' "$T/service.log")" = "$n_create" ] &&
    [ "$(grep -c '"valid":true' "$T/$wire-lost/judge.jsonl")" = 10 ] &&
    tail -n +$((from + 1)) "$T/service.log" | grep '"list"' | grep -q '"start": 2' &&
    ok "$wire: a batch whose id the kill left unrecorded is found on the list's second page, not submitted again" ||
    bad "$wire lost id: $(tail -3 "$T/$wire-lost3.out")"
done

# a request the provider refuses as invalid (OpenAI: a 400 in the error file; Anthropic: invalid_request_error;
# Gemini: an inline error with code 400) fails at once: not resubmitted
sed 's/"text": "answer/"text": "BATCH:refused answer/' "$T/answers.jsonl" >"$T/answers-refused.jsonl"
for wire in openai anthropic gemini; do
  sed 's/^judge:$/judge:\n  max_rejudge: 0/' "$T/$wire-batch.yaml" >"$T/$wire-refused.yaml"
  "$BIN" judge --config "$T/$wire-refused.yaml" --test "$T/test.jsonl" --answers "$T/answers-refused.jsonl" --out-dir "$T/$wire-refused" \
    >"$T/$wire-refused.out" 2>&1 &&
    ! grep -q "submitted again" "$T/$wire-refused.out" && [ "$(grep -c '"valid":false' "$T/$wire-refused/judge.jsonl")" = 8 ] &&
    ok "$wire: requests refused as invalid fail at once, not resubmitted" || bad "$wire refused: $(tail -3 "$T/$wire-refused.out")"
done

# Gemini responses without their metadata keys: matched by their place in the request order
sed 's/"text": "answer/"text": "BATCH:nokeys answer/' "$T/answers.jsonl" >"$T/answers-nokeys.jsonl"
"$BIN" judge --config "$T/gemini-batch.yaml" --test "$T/test.jsonl" --answers "$T/answers-nokeys.jsonl" --out-dir "$T/nokeys" >"$T/nokeys.out" 2>&1 &&
  "$BIN" judge --config "$T/gemini-sync.yaml" --test "$T/test.jsonl" --answers "$T/answers-nokeys.jsonl" --out-dir "$T/nokeys-sync" >"$T/nokeys-sync.out" 2>&1 &&
  diff "$T/nokeys/judge.jsonl" "$T/nokeys-sync/judge.jsonl" >/dev/null &&
  ok "gemini: responses without their keys are matched by request order: the synchronous judgments" || bad "gemini no keys: $(tail -3 "$T/nokeys.out")"

# a budget the batch could exceed: nothing submitted, the requests skipped as a synchronous stage skips them
sed 's/  batch: true/  batch: true\n  budget_usd: 0.0001/' "$T/batch.yaml" >"$T/budget.yaml"
n_create=$(grep -c '"create"' "$T/service.log")
sed 's/"text": "answer/"text": "budget: answer/' "$T/answers.jsonl" >"$T/answers-budget.jsonl"
"$BIN" judge --config "$T/budget.yaml" --test "$T/test.jsonl" --answers "$T/answers-budget.jsonl" --out-dir "$T/budget" >"$T/budget.out" 2>&1
grep -q "skipped: the budget has" "$T/budget.out" && [ "$(grep -c '"create"' "$T/service.log")" = "$n_create" ] &&
  ok "a batch that could pass the budget is not submitted" || bad "budget: $(tail -3 "$T/budget.out")"

# batches split at batch_max_requests: five batches for 24 requests, all submitted before any is waited for (each
# held 2 s by BATCH:slow: one after another, each would end before the next were created), the same judgments as
# the synchronous path, and each batch's state and counts on stderr
sed 's/"text": "answer/"text": "BATCH:slow split: answer/' "$T/answers.jsonl" >"$T/answers-split.jsonl"
for wire in openai anthropic gemini; do
  sed 's/  batch_poll_s: 0.05/  batch_poll_s: 0.05\n  batch_max_requests: 5/' "$T/$wire-batch.yaml" >"$T/$wire-split.yaml"
  from=$(wc -l <"$T/service.log")
  "$BIN" judge --config "$T/$wire-split.yaml" --test "$T/test.jsonl" --answers "$T/answers-split.jsonl" --out-dir "$T/$wire-split" \
    >"$T/$wire-split.out" 2>&1 &&
    "$BIN" judge --config "$T/$wire-sync.yaml" --test "$T/test.jsonl" --answers "$T/answers-split.jsonl" --out-dir "$T/$wire-split-sync" \
    >"$T/$wire-split-sync.out" 2>&1 && diff "$T/$wire-split/judge.jsonl" "$T/$wire-split-sync/judge.jsonl" >/dev/null &&
    python3 - "$T/service.log" "$from" "$T/$wire-split.out" <<'PY' && ok "$wire: 24 requests at batch_max_requests 5: five batches at once, the synchronous judgments, each batch's progress shown" ||
import json, re, sys
log = [json.loads(l) for l in open(sys.argv[1]).readlines()[int(sys.argv[2]):]]
created = {e["batch"]: e["t"] for e in log if e.get("batch_api") == "create"}
ended = {e["batch"]: e["t"] for e in log if e.get("batch_api") == "results"}
assert len(created) == 5 and set(ended) == set(created), (created, ended)
assert max(created.values()) < min(ended.values()), "a batch was created after another had ended"
out = open(sys.argv[3]).read()
for b in created:  # each batch's state while held, then its end with its counts
    said = re.findall(rf"^batch: {re.escape(b)} (\w+), (\d+) of (\d+) done, (\d+) failed$", out, re.M)
    assert len(said) >= 2 and said[-1][0] == "completed" and said[-1][1] == said[-1][2] != "0", (b, said)
    assert said[0][0] != "completed", (b, said)
assert "batch: 5 of 5 batches ended" in out and "batch: 0 of 5 batches ended" in out, out
PY
    bad "$wire split: $(tail -3 "$T/$wire-split.out")"
done

# the stage's wait (batch_deadline_h, here 1.44 s) ends before a batch held 2 s: a clear error naming it; the rerun,
# with the default wait, attaches to it and submits nothing
sed 's/"text": "answer/"text": "BATCH:slow deadline: answer/' "$T/answers.jsonl" >"$T/answers-deadline.jsonl"
sed 's/  batch_poll_s: 0.05/  batch_poll_s: 0.05\n  batch_deadline_h: 0.0004/' "$T/openai-batch.yaml" >"$T/deadline.yaml"
"$BIN" judge --config "$T/deadline.yaml" --test "$T/test.jsonl" --answers "$T/answers-deadline.jsonl" --out-dir "$T/deadline" >"$T/deadline1.out" 2>&1
rc=$?
n_create=$(grep -c '"create"' "$T/service.log")
[ $rc -ne 0 ] && grep -q "batch batch-[0-9]* is still validating after the stage's wait (service.batch_deadline_h)" "$T/deadline1.out" &&
  "$BIN" judge --config "$T/openai-batch.yaml" --test "$T/test.jsonl" --answers "$T/answers-deadline.jsonl" --out-dir "$T/deadline" \
    >"$T/deadline2.out" 2>&1 && grep -q "attaching to" "$T/deadline2.out" && [ "$(grep -c '"create"' "$T/service.log")" = "$n_create" ] &&
  [ "$(grep -c '"valid":true' "$T/deadline/judge.jsonl")" = 24 ] &&
  ok "a batch that outlasts batch_deadline_h is a clear error; the rerun attaches to it" || bad "deadline (rc $rc): $(tail -3 "$T/deadline1.out" "$T/deadline2.out")"

# the whole loop with service.batch on each wire: the same records, judgments and metrics every round as the
# synchronous loop, the report at the batch price
head -24 "$SRC/configs/data/dates.coverage.jsonl" >"$T/coverage.jsonl"
for wire in openai anthropic gemini; do
  for mode in false true; do
    cat >"$T/run-$wire-$mode.yaml" <<YAML
run: {dir: $T/run-$wire-$mode, coverage: $T/coverage.jsonl, test_ratio: 0.25, max_rounds: 2, patience: 5, samples: 1, probe: 4}
student:
  model: $SRC/tests/fixtures/tiny/llama.gguf
  threads: 1
  train: {epochs: 1, lr: 0.01, tokens_per_step: 128, max_len: 128, dropout: 0}
  infer: {max_tokens: 12, temperature: 0.8, seed: 3, batch: 8}
$(sed -n '/^service:/,$p' "$T/$wire-sync.yaml" | sed "s/  batch: false/  batch: $mode/")
YAML
    "$BIN" run "$T/run-$wire-$mode.yaml" >"$T/run-$wire-$mode.out" 2>&1 || bad "run $wire batch=$mode: $(tail -3 "$T/run-$wire-$mode.out")"
  done
  python3 - "$T" "$wire" <<'PY' && ok "$wire: llamaduo run with service.batch: the synchronous run's records, judgments and metrics (but the replies' arrival times, and the cost at half), the report at the batch price" || bad "$wire: run with batches"
import json, sys
T, wire = sys.argv[1], sys.argv[2]
for t in (1, 2):
    a, b = (json.load(open(f"{T}/run-{wire}-{m}/rounds/{t:02d}/metrics.json")) for m in ("false", "true"))
    for k in ("similarity", "precision", "exact_match", "pass"):
        assert a[k] == b[k], (t, k, a[k], b[k])
# the records, answers and judgments themselves, byte for byte (the fault server answers from each request's hash)
for f in ("data/round-02.synth.jsonl", "data/ceiling.answers.jsonl", "data/ceiling.judge.jsonl", "rounds/01/judge.jsonl",
          "rounds/02/judge.jsonl", "rounds/02/train.jsonl", "rounds/01/metrics.json", "rounds/02/metrics.json"):
    x, y = (open(f"{T}/run-{wire}-{m}/{f}").read() for m in ("false", "true"))
    if f.endswith(".jsonl"):  # when a synthetic pair's reply arrived differs by the clock: there must be one, that is all
        x, y = ([json.loads(l) for l in v.splitlines()] for v in (x, y))
        synth = f.endswith("synth.jsonl")  # every synthetic record has one; the seeds in train.jsonl have none
        assert all(r.pop("created") if synth else r.pop("created", "-") for r in x + y), f
    if f.endswith("metrics.json"):  # the one difference: the batch price, half the listed one
        x, y = json.loads(x), json.loads(y)
        assert abs(y.pop("cost_usd") - x.pop("cost_usd") / 2) < 1e-6, f
    assert x == y and len(x) > 0, f
h = open(f"{T}/run-{wire}-true/report.html").read()
assert "batch price, 50% of the listed one" in h
import sqlite3
noted = dict(sqlite3.connect(f"{T}/run-{wire}-true/ledger.sqlite").execute("select key, value from run where key like 'batch %'"))
assert len(noted) >= 3 and set(noted.values()) == {"completed"}, noted  # every batch in the ledger, with its end
PY
done


# the report says per service which dollars are at the batch price: a judge of its own that batches while the service
# does not, and a batching service with a judge that does not
for who in judge service; do
  sb=false jb=true
  [ $who = service ] && sb=true jb=false
  svc="provider: openai, base_url: 'http://127.0.0.1:$PORT/v1', api_key_env: LD_FAKE_KEY, batch_poll_s: 0.05, max_attempts: 3"
  cat >"$T/mixed-$who.yaml" <<YAML
run: {dir: $T/mixed-$who, coverage: $T/coverage.jsonl, test_ratio: 0.25, max_rounds: 1, samples: 1, probe: 4}
student:
  model: $SRC/tests/fixtures/tiny/llama.gguf
  threads: 1
  train: {epochs: 1, lr: 0.01, tokens_per_step: 128, max_len: 128, dropout: 0}
  infer: {max_tokens: 12, temperature: 0.8, seed: 3, batch: 8}
service: {$svc, model: teacher-1, price_in_per_mtok: 2, price_out_per_mtok: 8, batch: $sb}
task:
  description: Convert free-text dates to ISO 8601 dates.
judge:
  judgments_per_answer: 1
  service: {$svc, model: judge-1, price_in_per_mtok: 1, price_out_per_mtok: 4, batch: $jb}
YAML
  "$BIN" run "$T/mixed-$who.yaml" >"$T/mixed-$who.out" 2>&1 || bad "run with only the $who batching: $(tail -3 "$T/mixed-$who.out")"
done
python3 - "$T" <<'PY' && ok "the report says per service which dollars are at the batch price (a judge's own batch: true too)" || bad "batch price per service"
import sys
T = sys.argv[1]
batch = "went through the batch API: their dollars are at the batch price, 50% of the listed one."
sync = "were sent one at a time: their dollars are at the listed price."
judge = open(f"{T}/mixed-judge/report.md").read()
assert f"Requests to judge-1 (the judge) {batch}" in judge and f"Requests to teacher-1 (the service: synthesis and the ceiling's answers) {sync}" in judge, judge
service = open(f"{T}/mixed-service/report.md").read()
assert f"Requests to judge-1 (the judge) {sync}" in service and f"Requests to teacher-1 (the service: synthesis and the ceiling's answers) {batch}" in service, service
PY
finish
