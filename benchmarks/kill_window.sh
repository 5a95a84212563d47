#!/usr/bin/env bash
# The kill -9 window of the service client: how long after a reply leaves the service a kill can still lose
# it (so that the rerun pays for it again). `llamaduo synth` runs against tests/fault_server.py and is killed
# with -9 at random moments, then rerun to the end; the server counts an answer as received only if the client
# lived --liveness seconds past it, and the answers it gave twice are counted, for several liveness values.
# A window shorter than L shows as no answer given twice at liveness L.
# Usage: bash benchmarks/kill_window.sh BUILD_DIR [KILLS_PER_VALUE] [LIVENESS...]
set -u
BIN="$(cd "$1" && pwd)/llamaduo"; KILLS="${2:-10}"; shift 2 2>/dev/null || shift $#
VALUES=("${@:-0.002 0.01 0.05}"); read -r -a VALUES <<<"${VALUES[*]}"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
T=$(mktemp -d); trap 'kill $srv 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"' EXIT
export LD_FAKE_KEY="sk-llamaduo-FAKE-kill-window"
for i in $(seq 40); do
  echo "{\"id\": \"s$i\", \"messages\": [{\"role\": \"user\", \"content\": \"Convert day $i of the year 2024 to ISO format\"}, {\"role\": \"assistant\", \"content\": \"2024-$i\"}]}"
done >"$T/seeds.jsonl"
echo '{"id": "t1", "messages": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]}' >"$T/test.jsonl"
printf "%-10s %6s %8s %14s\n" liveness kills answers "answered twice"
for L in "${VALUES[@]}"; do
  rm -rf "$T/out" "$T/port" "$T/log"; touch "$T/log"
  python3 "$SRC/tests/fault_server.py" --port-file "$T/port" --log "$T/log" --latency 0.02 --liveness "$L" --expect-key-env LD_FAKE_KEY &
  srv=$!
  for _ in $(seq 100); do [ -f "$T/port" ] && break; sleep 0.05; done
  cat >"$T/c.yaml" <<YAML
service: {provider: openai, base_url: "http://127.0.0.1:$(cat "$T/port")/v1", model: m, api_key_env: LD_FAKE_KEY, concurrency: 16}
task: {description: dates}
synth: {calls: 400, pairs_per_call: 2}
YAML
  for _ in $(seq "$KILLS"); do
    "$BIN" synth --config "$T/c.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$T/out" >/dev/null 2>&1 &
    pid=$!; sleep "0.$((RANDOM % 8 + 2))"; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  done
  "$BIN" synth --config "$T/c.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$T/out" >/dev/null 2>&1
  sleep "$(python3 -c "print($L + 0.5)")"
  python3 - "$T/log" "$L" "$KILLS" <<'PY'
import collections, json, sys
entries = [json.loads(l) for l in open(sys.argv[1])]
c = collections.Counter(e["hash"] for e in entries if e["fault"] == "none")
print(f"{sys.argv[2]:<10} {sys.argv[3]:>6} {len(c):>8} {sum(1 for v in c.values() if v > 1):>14}")
PY
  kill $srv; wait $srv 2>/dev/null
done
