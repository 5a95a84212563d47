#!/usr/bin/env bash
# `llamaduo run` end to end on the CPU with the tiny model as the student and the local fault server as the
# service LLM: a full multi-round run; the same run killed with -9 inside every stage and resumed, ending with the
# same records and metrics and no request answered twice; the stages alone on a run directory; status; the
# report (and, where Debian's headless Chromium is installed, the report rendered and its charts found in the
# screenshot); bad configs refused before any work.
# Usage: test_run.sh BUILD_DIR SOURCE_DIR
source "$2/tests/harness.sh"
export LD_FAKE_KEY="sk-llamaduo-FAKE-7c1e55aa"

server() { fault_server "$1" --latency 0.03 --liveness 0.5; }  # server NAME: logs to $T/NAME.log; sets PORT
free_port() { python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
head -24 "$SRC/configs/data/dates.coverage.jsonl" >"$T/coverage.jsonl"
config() {  # config FILE PORT DIR
  cat >"$1" <<YAML
run:
  dir: $3
  coverage: $T/coverage.jsonl
  test_ratio: 0.25
  max_rounds: 3
  patience: 5
  samples: 2
student:
  model: $SRC/tests/fixtures/tiny/llama.gguf
  threads: 1
  train: {epochs: 2, lr: 0.01, tokens_per_step: 128, max_len: 128, dropout: 0}
  infer: {max_tokens: 24, temperature: 0.8, seed: 3, batch: 4}
service:
  provider: anthropic
  base_url: http://127.0.0.1:$2
  model: teacher-1
  api_key_env: LD_FAKE_KEY
  price_in_per_mtok: 3
  price_out_per_mtok: 15
  concurrency: 3
  max_attempts: 4
task:
  description: Convert free-text dates to ISO 8601 dates.
synth:
  calls: 4
  pairs_per_call: 3
judge:
  judgments_per_answer: 2
  threshold: 90
report:
  local_monthly_usd: 30
  local_usd_per_hour: 0.05
YAML
}
strip() { python3 -c "import json,sys; [print(json.dumps({k:v for k,v in json.loads(l).items() if k!='created'})) for l in open(sys.argv[1])]" "$1"; }
answered_twice() {
  python3 -c "
import json, sys, collections
c = collections.Counter(e['hash'] for e in map(json.loads, open(sys.argv[1])) if e['fault'] == 'none')
print(sum(1 for v in c.values() if v > 1))" "$1"
}
running_stage() {  # the stage the ledger shows running, as round:stage
  python3 -c "
import sqlite3, sys
try:
    r = sqlite3.connect(sys.argv[1], timeout=5).execute(\"select round, stage from stages where status='running'\").fetchone()
    print(f'{r[0]}:{r[1]}' if r else '')
except Exception:
    print('')" "$1/ledger.sqlite"
}

# 1. an uninterrupted run
server clean; config "$T/clean.yaml" "$PORT" "$T/clean"
"$BIN" run "$T/clean.yaml" >"$T/clean.out" 2>&1 && ok "a three-round run completes" || bad "run failed: $(tail -5 "$T/clean.out")"
for f in data/coverage.train.jsonl data/coverage.test.jsonl data/ceiling.metrics.json data/round-02.synth.jsonl \
         data/round-03.dropped.jsonl rounds/01/adapter/adapter_model.safetensors rounds/03/infer.jsonl rounds/03/judge.jsonl \
         rounds/03/metrics.json report.html report.md ledger.sqlite cache.sqlite config.yaml; do
  [ -s "$T/clean/$f" ] || { bad "missing $f"; continue; }
done
ok "the run directory holds every stage's files"
python3 - "$T/clean" <<'PY' && ok "ledger: every stage done with hashes, tokens and dollars; stop reason recorded" || bad "ledger contents"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/ledger.sqlite")
rows = db.execute("select round, stage, status, outputs, prompt_tokens, usd from stages").fetchall()
want = {(0, "split"), (0, "ceiling")} | {(t, s) for t in (1, 2, 3) for s in ("train", "infer", "judge")} | {(2, "synth"), (3, "synth")}
want |= {(1, "probe"), (2, "probe")}  # after each round that goes on: what the next synthesis aims at
assert {(r, s) for r, s, *_ in rows} == want, rows
assert all(st == "done" and json.loads(o) for _, _, st, o, *_ in rows), rows
assert all(p > 0 and usd > 0 for r, s, st, o, p, usd in rows if s in ("ceiling", "synth", "judge", "probe")), rows
reason = dict(db.execute("select key, value from run").fetchall())["stop_reason"]
assert "maximum of 3 rounds" in reason, reason
# synthetic data grows by run.synth_growth (2): round 3 asks twice the calls of round 2
d = {s + str(r): json.loads(x) for r, s, x in db.execute("select round, stage, detail from stages")}
assert d["synth2"]["calls"] == 4 and d["synth3"]["calls"] == 8, d
assert d["train3"]["records"] > d["train2"]["records"] > d["train1"]["records"] == 18, d
PY
"$BIN" status "$T/clean" >"$T/status.out" 2>&1 && grep -q "maximum of 3 rounds" "$T/status.out" && grep -q "round 3: similarity" "$T/status.out" &&
  ok "status prints stages, scores and the stop reason" || bad "status: $(cat "$T/status.out")"
# the service judges its own data (the ceiling and three rounds of judging): the warning is a fact of the config
n_warn=$(grep -c "self-preference" "$T/clean.out")
[ "$n_warn" = 1 ] && ok "the self-preference warning is printed once per run" || bad "the self-preference warning printed $n_warn times"
sleep 1  # the fault server logs an answer once the client outlived --liveness: let the last entries land
n_before=$(wc -l <"$T/clean.log")
"$BIN" run "$T/clean.yaml" >"$T/again.out" 2>&1 && grep -q "already finished" "$T/again.out" && [ "$(wc -l <"$T/clean.log")" = "$n_before" ] &&
  ok "rerunning a finished run redoes nothing" || bad "rerun of a finished run: $(tail -3 "$T/again.out")"

# 2. the same run killed with -9 inside every stage, resumed each time
server crash; config "$T/crash.yaml" "$PORT" "$T/crash"
# a driver that polls the ledger in-process (fast enough for the tiny model's short stages) and kills the run with
# -9 a random moment into each kind of stage once, restarting it until it finishes
killed=$(python3 - "$BIN" "$T/crash.yaml" "$T/crash" "$T/crash.out" <<'PY'
import os, random, signal, sqlite3, subprocess, sys, time
binary, cfg, rundir, log = sys.argv[1:5]
random.seed(5)
killed, starts = set(), 0
while starts < 40:
    starts += 1
    with open(log, "a") as out:
        p = subprocess.Popen([binary, "run", cfg], stdout=out, stderr=out)
    victim = None
    while p.poll() is None and victim is None:
        try:
            db = sqlite3.connect(os.path.join(rundir, "ledger.sqlite"), timeout=5)
            row = db.execute("select stage from stages where status='running'").fetchone()
            db.close()
        except sqlite3.Error:
            row = None
        if row and row[0] not in killed:
            victim = row[0]
        else:
            time.sleep(0.002)
    if victim is None:
        if p.wait() == 0:
            break
        continue
    time.sleep(random.choice([0, 0, random.random() * 0.3]))
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        killed.add(victim)
    p.wait()
print(" " + " ".join(sorted(killed)) + " ", end="")
print(f"({starts} starts)", file=sys.stderr)
PY
)
echo "killed inside:$killed"
for k in ceiling train infer judge synth; do
  [[ "$killed" == *" $k "* ]] && ok "killed with -9 inside $k, resumed" || bad "never managed to kill inside $k"
done
grep -q "stopped after round 3" "$T/crash.out" && ok "the killed run finishes after resuming" || bad "crash run: $(tail -5 "$T/crash.out")"
same=1
for f in data/coverage.train.jsonl data/coverage.test.jsonl data/round-02.synth.jsonl data/round-03.synth.jsonl data/round-02.dropped.jsonl \
         data/round-03.dropped.jsonl data/ceiling.answers.jsonl rounds/01/infer.jsonl rounds/02/infer.jsonl rounds/03/infer.jsonl \
         rounds/03/judge.jsonl data/ceiling.judge.jsonl; do
  cmp -s <(strip "$T/clean/$f") <(strip "$T/crash/$f") || { same=0; bad "$f differs after the crashes"; }
done
for f in rounds/01/metrics.json rounds/02/metrics.json rounds/03/metrics.json data/ceiling.metrics.json rounds/03/adapter/adapter_model.safetensors; do
  cmp -s "$T/clean/$f" "$T/crash/$f" || { same=0; bad "$f differs after the crashes"; }
done
[ $same = 1 ] && ok "same records, answers, judgments, metrics and adapters as the uninterrupted run"
# the resumed stages answered part of their requests from the cache: paid and reused are shown apart, and add up
"$BIN" status "$T/crash" >"$T/crash-status.out" 2>&1
python3 - "$T/crash" "$T/crash-status.out" <<'PY' && ok "status: requests, tokens and dollars paid now beside those reused from the cache" || bad "paid / reused columns: $(cat "$T/crash-status.out")"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/ledger.sqlite")
rows = db.execute("select round, stage, requests, cache_hits, prompt_tokens + completion_tokens, new_prompt_tokens + new_completion_tokens,"
                  " usd, new_usd, reused_usd from stages").fetchall()
status = {(int(f[0]), f[1]): f for f in (l.split() for l in open(sys.argv[2])) if len(f) == 10 and f[0].isdigit()}
assert "req cached" in open(sys.argv[2]).read()
reused = 0
for rnd, stage, req, hits, tok, new_tok, usd, new_usd, reused_usd in rows:
    # no unusable replies here, so what was paid and what was reused add up to what the replies are worth
    assert 0 <= new_tok <= tok and abs(new_usd + reused_usd - usd) < 1e-9, (stage, tok, new_tok, usd, new_usd, reused_usd)
    assert (hits == 0) == (tok == new_tok) == (reused_usd == 0), (stage, hits, tok, new_tok, reused_usd)  # reused replies bring their tokens
    f = status[(rnd, stage)]
    assert (int(f[4]), int(f[5]), int(f[6]), int(f[7])) == (req, hits, new_tok, tok - new_tok), (f, req, hits, new_tok, tok)
    assert abs(float(f[8]) - new_usd) < 1e-4 and abs(float(f[9]) - reused_usd) < 1e-4, (f, new_usd, reused_usd)
    reused += hits
assert reused > 0, rows  # the killed stages were resumed from the cache
PY
grep -q "reused from the cache" "$T/crash/report.md" && grep -q "paid now" "$T/crash/report.html" &&
  ok "the report labels what was paid now and what was reused from the cache" || bad "report: no paid / reused columns"
sleep 1  # answers are logged once the client outlived --liveness
[ "$(answered_twice "$T/crash.log")" = 0 ] && ok "no request answered twice across the crashes" || bad "$(answered_twice "$T/crash.log") requests answered twice"

# 3. each stage alone on a run directory
rm -f "$T/clean/rounds/02/infer.jsonl"
"$BIN" infer --run "$T/clean" --round 2 >"$T/stage.out" 2>&1 && cmp -s "$T/clean/rounds/02/infer.jsonl" "$T/crash/rounds/02/infer.jsonl" &&
  ok "infer --run redoes a stage whose output went missing" || bad "infer --run: $(tail -3 "$T/stage.out")"
"$BIN" judge --run "$T/clean" --round 2 >"$T/stage.out" 2>&1 && grep -q "judge already done" "$T/stage.out" &&
  ok "judge --run skips a finished stage" || bad "judge --run: $(tail -3 "$T/stage.out")"
"$BIN" synth --run "$T/clean" --round 1 >"$T/stage.out" 2>&1; [ $? != 0 ] && grep -q "from 2" "$T/stage.out" &&
  ok "synth --run --round 1 is refused with the reason" || bad "synth round 1: $(cat "$T/stage.out")"
rm -f "$T/clean/report.html"
"$BIN" report "$T/clean" >"$T/stage.out" 2>&1 && [ -s "$T/clean/report.html" ] && ok "report rewrites the report" || bad "report: $(cat "$T/stage.out")"

# 4. the report: self-contained, with the charts and the sections the issue lists
python3 - "$T/clean/report.html" "$T/clean/report.md" <<'PY' && ok "report: charts, scores per round, ceiling, data, drops, cost, break-even, samples; nothing external" || bad "report contents"
import re, sys
h, m = open(sys.argv[1]).read(), open(sys.argv[2]).read()
for cid in ("chart-scores", "chart-shares", "chart-data"):
    assert re.search(r'<svg id="%s"' % cid, h), cid
assert len(re.findall(r'<rect class="bar"', h)) >= 12
for text in ("Judge scores per round", "service (ceiling)", "Data per round", "near duplicates", "contaminated", "Tokens, dollars and time",
             "Break-even", "Sample answers", "maximum of 3 rounds"):
    assert text in h, text
assert not re.search(r'(src|href)="(https?:)?//', h) and "<script" not in h
for text in ("## Judge scores per round", "## Data per round", "## Break-even", "## Sample answers"):
    assert text in m, text
PY
CHROME=$(command -v chromium-headless-shell || command -v chromium || true)
if [ -n "$CHROME" ]; then
  "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,2600 --enable-logging=stderr --v=0 \
    --screenshot="$T/report.png" "file://$T/clean/report.html" >"$T/chrome.out" 2>&1
  python3 - "$T/report.png" "$T/chrome.out" <<'PY' && ok "the report renders in headless Chromium without errors; the charts' colours fill the screenshot" || bad "report rendering: $(tail -5 "$T/chrome.out")"
import struct, sys, zlib
log = open(sys.argv[2], errors="replace").read()
assert "Uncaught" not in log and "ERROR:CONSOLE" not in log, log[-500:]
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        bpp = {2: 3, 6: 4}[ctype]
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
for y in range(h):  # undo the PNG row filters
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pred = [0, a, b, (a + b) // 2, a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c][f]
        line[i] = (line[i] + pred) & 255
    rows.append(line); prev = line
def count(rgb):
    return sum(1 for row in rows for x in range(w) if abs(row[x * bpp] - rgb[0]) < 8 and abs(row[x * bpp + 1] - rgb[1]) < 8 and abs(row[x * bpp + 2] - rgb[2]) < 8)
blue, orange, green = count((0x1f, 0x77, 0xb4)), count((0xff, 0x7f, 0x0e)), count((0x2c, 0xa0, 0x2c))
print(f"screenshot {w}x{h}: chart pixels blue {blue}, orange {orange}, green {green}")
assert blue > 500 and orange > 500 and green > 500
PY
else
  bad "headless Chromium not found (tools/setup.sh installs chromium-headless-shell)"
fi

# 5. bad configs are refused before any work, naming the key
server bad; n_before=$(wc -l <"$T/bad.log")
try_config() {  # try_config NAME EXPECTED-TEXT SED-EXPRESSION
  sed "$3" "$T/clean.yaml" | sed "s|dir: $T/clean|dir: $T/bad|; s|127.0.0.1:[0-9]*|127.0.0.1:$PORT|" >"$T/bad.yaml"
  "$BIN" run "$T/bad.yaml" >"$T/bad.out" 2>&1; rc=$?
  if [ $rc != 0 ] && grep -q "$2" "$T/bad.out" && [ ! -e "$T/bad/ledger.sqlite" ]; then ok "bad config refused: $1"; else bad "bad config $1: rc $rc: $(tail -3 "$T/bad.out")"; fi
}
try_config "unknown key" "unknown key 'run.max_round'" 's/  max_rounds: 3/  max_round: 3/'
try_config "wrong type" "'run.samples' must be a number" 's/  samples: 2/  samples: two/'
try_config "missing file" "does not exist" 's|coverage: .*|coverage: /nonexistent/data.jsonl|'
try_config "a directory as the coverage file" "'run.coverage' names $T, a directory (it must be a file)" "s|coverage: .*|coverage: $T|"
try_config "a directory without config.json as the student" "'student.model' names the directory $T, which holds no config.json" \
  "s|model: .*llama.gguf|model: $T|"
try_config "a missing student" "'student.model' names $T/none.gguf, which does not exist (it must be an HF model directory or a GGUF file)" \
  "s|model: .*llama.gguf|model: $T/none.gguf|"
try_config "threshold out of range" "'judge.threshold' must be a number in \[1, 100\], not 150" 's/  threshold: 90/  threshold: 150/'
try_config "a budget of 0" "budget_usd' is 0" 's/  patience: 5/  patience: 5\n  budget_usd: 0/'
try_config "bad student.train" "unknown key 'student.train.epochz'" 's/train: {epochs: 2/train: {epochz: 2/'
try_config "student.train out of range" "'student.train.rank' must be a whole number in \[1, 1024\], not 0" 's/train: {epochs: 2/train: {rank: 0, epochs: 2/'
try_config "student.train with a bad target" "student.train: targets: unknown module 'qproj'" "s/train: {epochs: 2/train: {targets: 'qproj', epochs: 2/"
try_config "unknown retrain" "'run.retrain' must be one of base|continue, not 'sometimes'" 's/  patience: 5/  patience: 5\n  retrain: sometimes/'
[ "$(wc -l <"$T/bad.log")" = "$n_before" ] && ok "no request sent for a bad config" || bad "a bad config sent requests"
"$BIN" run "$T/crash.yaml" --dir "$T/clean" >"$T/bad.out" 2>&1; [ $? != 0 ] && grep -q "started with another config" "$T/bad.out" &&
  ok "a run directory started with another config is refused" || bad "config mismatch: $(cat "$T/bad.out")"

# 6. the shipped configs read cleanly (the demo, the four task families for three providers, the template)
# (--check needs the key variables they name set; the values are never sent)
keys=$(grep -ho "api_key_env: *[A-Z_]*" "$SRC"/configs/*.yaml "$SRC"/configs/tasks/*.yaml | awk '{print $2}' | sort -u | sed 's/$/=set-for-the-check/')
n_ok=0; n_cfg=0
for c in "$SRC"/configs/demo.yaml "$SRC"/configs/tasks/*.yaml; do
  n_cfg=$((n_cfg + 1))
  (cd "$SRC" && env $keys "$BIN" run --check "$c") >"$T/check.out" 2>&1 && n_ok=$((n_ok + 1)) || echo "  $c: $(tail -1 "$T/check.out")"
done
sed "s|coverage: data/my-task.jsonl|coverage: configs/data/classify.jsonl|" "$SRC/configs/template.yaml" >"$T/template.yaml"
n_cfg=$((n_cfg + 1)); (cd "$SRC" && env $keys "$BIN" run --check "$T/template.yaml") >"$T/check.out" 2>&1 && n_ok=$((n_ok + 1)) || echo "  template: $(tail -1 "$T/check.out")"
[ $n_ok = $n_cfg ] && [ $n_cfg -ge 14 ] && ok "all $n_cfg shipped configs pass run --check" || bad "$n_ok of $n_cfg shipped configs pass run --check"
for f in summarize classify closed_qa coding; do
  [ "$(grep -c . "$SRC/configs/data/$f.jsonl")" -ge 40 ] || bad "configs/data/$f.jsonl has fewer than 40 records"
done

# 7. run --check: every key variable the config names is set, and the directory it reports is the one the run would use
env -u LD_FAKE_KEY "$BIN" run --check "$T/clean.yaml" >"$T/check.out" 2>&1; [ $? != 0 ] &&
  grep -q "'service.api_key_env' names LD_FAKE_KEY, which is not set" "$T/check.out" &&
  ok "run --check refuses a config whose key variable is unset" || bad "run --check without the key: $(cat "$T/check.out")"
sed "s|dir: $T/clean|dir: $T/nokey|; s|^judge:$|judge:\n  services:\n    - {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: judge-b, api_key_env: LD_OTHER_KEY}|" \
  "$T/clean.yaml" >"$T/judges.yaml"
"$BIN" run --check "$T/judges.yaml" >"$T/check.out" 2>&1; [ $? != 0 ] && grep -q "'judge.services\[0\].api_key_env' names LD_OTHER_KEY" "$T/check.out" &&
  ok "run --check names a judge's unset key variable" || bad "run --check with a judge's key unset: $(cat "$T/check.out")"
"$BIN" run "$T/judges.yaml" >"$T/check.out" 2>&1; [ $? != 0 ] && grep -q "LD_OTHER_KEY" "$T/check.out" && [ ! -e "$T/nokey" ] &&
  ok "run with a key variable unset stops before any work" || bad "run with a judge's key unset: $(tail -3 "$T/check.out")"
"$BIN" run --check "$T/clean.yaml" --dir "$T/elsewhere" >"$T/check.out" 2>&1 && grep -q "run directory $T/elsewhere," "$T/check.out" &&
  ok "run --check --dir reports that directory" || bad "run --check --dir: $(cat "$T/check.out")"
"$BIN" run --check "$T/clean.yaml" --dir "$T/crash" >"$T/check.out" 2>&1; [ $? != 0 ] && grep -q "started with another config" "$T/check.out" &&
  ok "run --check refuses a directory started with another config" || bad "run --check --dir of another run: $(cat "$T/check.out")"

# 8. a service that is down: the first stage stops at once with the service, its URL and the error on one line; status
#    and the ledger show what happened, not garbage
DOWN=$(free_port)
sed "s|dir: $T/clean|dir: $T/down|; s|127.0.0.1:[0-9]*|127.0.0.1:$DOWN|; s|max_attempts: 4|max_attempts: 2|" "$T/clean.yaml" >"$T/down.yaml"
t0=$(date +%s)
"$BIN" run "$T/down.yaml" >"$T/down.out" 2>&1; rc=$?
[ $rc != 0 ] && [ $(($(date +%s) - t0)) -lt 60 ] && grep -q "ceiling: all 6 requests to teacher-1 (anthropic, http://127.0.0.1:$DOWN) failed.*: Couldn't connect to server" "$T/down.out" &&
  ! grep -q "judge: pass" "$T/down.out" && ok "a service that is down stops the run at once, naming the service, its URL and the error" ||
  bad "service down: rc $rc: $(tail -5 "$T/down.out")"
env -u LD_FAKE_KEY "$BIN" status "$T/down" >"$T/down-status.out" 2>&1
python3 - "$T/down" "$T/down-status.out" <<'PY' && ok "status and the ledger after a failed service stage: zeros and the error, no garbage" || bad "status after a failed stage: $(cat "$T/down-status.out")"
import json, math, sqlite3, sys
out = open(sys.argv[2]).read()
row = [l.split() for l in out.splitlines() if l.split()[:3] == ["0", "ceiling", "failed"]]
assert len(row) == 1 and len(row[0]) == 10, out
assert all(float(x) == 0 for x in row[0][5:]), row  # nothing answered: no tokens, no dollars, nothing reused
assert 0 <= int(row[0][4]) <= 12, row  # requests sent: at most 2 attempts for each of the 6
assert "ceiling failed: ceiling: all 6 requests" in out, out
db = sqlite3.connect(sys.argv[1] + "/ledger.sqlite")
for stage, p, c, usd, detail in db.execute("select stage, prompt_tokens, completion_tokens, usd, detail from stages"):
    assert p == c == 0 and usd == 0, (stage, p, c, usd)
    for k, v in json.loads(detail).items():
        assert not isinstance(v, float) or (math.isfinite(v) and (v == 0 or abs(v) > 1e-100) and abs(v) < 1e12), (stage, k, v)
PY

# 9. an HF model directory as the student and a local model as the teacher (service.local, a GGUF), the judge the
#    fault server: one short round; the run's own logs (the local service's, the training check's) stay in the run
#    directory, and nothing is left in /tmp (watched with strace where it is installed)
server hf; TEACH=$(free_port)
sed -e "s|dir: $T/clean|dir: $T/hf|; s|max_rounds: 3|max_rounds: 1|; s|model: $SRC/tests/fixtures/tiny/llama.gguf|model: $SRC/tests/fixtures/tiny/llama|" \
    -e "s|^service:$|service:\n  local: {model: $SRC/tests/fixtures/tiny/llama.gguf, port: $TEACH, parallel: 4, ctx: 256}|" \
    -e "/^  provider: anthropic$/d; /^  base_url: /d; /^  api_key_env: /d" \
    -e "s|^judge:$|judge:\n  service: {provider: anthropic, base_url: \"http://127.0.0.1:$PORT\", model: judge-1, api_key_env: LD_FAKE_KEY}|" \
    "$T/clean.yaml" >"$T/hf.yaml"
sed -i "s|^  model: teacher-1$|  model: teacher-1\n  max_tokens: 8|" "$T/hf.yaml"  # short ceiling answers
# (LeakSanitizer cannot run under ptrace: the sanitizer build checks leaks in every other run, not this one)
TRACE=(); command -v strace >/dev/null &&
  TRACE=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f --seccomp-bpf -e trace=openat,creat,mkdir,rename -o "$T/hf.trace")
"${TRACE[@]}" "$BIN" run "$T/hf.yaml" >"$T/hf.out" 2>&1 && grep -q "stopped after round 1" "$T/hf.out" &&
  [ -s "$T/hf/rounds/01/adapter/adapter_model.safetensors" ] && [ -s "$T/hf/data/ceiling.metrics.json" ] && [ -s "$T/hf/rounds/01/metrics.json" ] &&
  ok "a run with an HF model directory as the student and a local GGUF teacher" || bad "HF student run: $(tail -5 "$T/hf.out")"
grep -q "serve: teacher-1 on http://127.0.0.1:$TEACH" "$T/hf/logs/serve.log" && ! grep -q "serve: teacher-1 on" "$T/hf.out" &&
  grep -q "log: $T/hf/logs/serve.log" "$T/hf.out" && ok "the local service's log is in the run directory (logs/serve.log), not on the console" ||
  bad "serve log: $(ls "$T/hf/logs" 2>&1) $(grep serve "$T/hf.out" | head -3)"
if [ ${#TRACE[@]} = 0 ]; then
  echo "skip nothing left in /tmp: strace is not installed"
elif grep -q '"/tmp/llamaduo' "$T/hf.trace"; then
  bad "the run wrote in /tmp: $(grep -o '"/tmp/llamaduo[^"]*"' "$T/hf.trace" | sort -u | head -3)"
else
  ok "the run writes nothing of its own in /tmp (the training check reads its settings from memory)"
fi

if grep -rqa "$LD_FAKE_KEY" "$T"; then bad "the API key reached disk: $(grep -rla "$LD_FAKE_KEY" "$T")"; else ok "the key is in no file"; fi
finish
