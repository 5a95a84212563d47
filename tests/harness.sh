# Sourced by the shell suites that drive llamaduo against the fault server (tests/test_*.sh BUILD_DIR SOURCE_DIR):
# the binary and the source, a scratch directory removed at exit (kept with KEEP=1) with every server started stopped,
# the ok/bad counters, a fault server on a free port, and the summary line that makes the exit status.
set -u
BIN="$1/llamaduo"; SRC="$2"
T=$(mktemp -d); pids=()
trap 'kill "${pids[@]}" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; }

fault_server() {  # fault_server NAME [fault_server.py options]: logs to $T/NAME.log, wants $LD_FAKE_KEY; sets PORT
  local name=$1; shift
  rm -f "$T/$name.port"; touch "$T/$name.log"
  python3 "$SRC/tests/fault_server.py" --port-file "$T/$name.port" --log "$T/$name.log" --expect-key-env LD_FAKE_KEY "$@" &
  pids+=($!)
  for _ in $(seq 100); do [ -f "$T/$name.port" ] && break; sleep 0.05; done
  PORT=$(cat "$T/$name.port")
}

finish() {  # the last line of a suite: its counts, and its exit status
  echo "$pass passed, $fail failed"
  [ "$fail" = 0 ]
}
