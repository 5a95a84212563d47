# Sourced by the data-parallel suites (tests/test_dist.sh, tests/test_dist_emu.sh) after harness.sh: the training
# data, the run comparison, and the helpers that start ranks, find them and wait for them.
DATA="$SRC/configs/data"
CMP=(python3 "$SRC/tests/compare_runs.py")

same() {  # same NAME DIR_A DIR_B [--tol T]: compare_runs.py's verdict
  local name=$1; shift
  if out=$("${CMP[@]}" "$@"); then ok "$name: $out"; else bad "$name: $out"; fi
}

expect_err() {  # expect_err NAME PATTERN COMMAND...: non-zero exit and PATTERN on stderr
  local name=$1 pat=$2; shift 2
  if "$@" >/dev/null 2>"$T/err"; then bad "$name: exit 0"; elif grep -q "$pat" "$T/err"; then ok "$name refused"; else bad "$name: $(tail -2 "$T/err")"; fi
}
ranks_of() {  # ranks_of PID: the pids of rank 0 and rank 1 that mpirun PID started, once both are there
  for _ in $(seq 200); do
    kids=($(pgrep -P "$1"))
    if [ ${#kids[@]} -ge 2 ]; then
      for k in "${kids[@]}"; do echo "$(tr '\0' '\n' < /proc/$k/environ | sed -n 's/^OMPI_COMM_WORLD_RANK=//p') $k"; done | sort -n | cut -d' ' -f2
      return
    fi
    sleep 0.05
  done
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
by_hand() {  # by_hand N NAME VAR=VALUE... -- COMMAND...: N ranks in the background (RANK, WORLD_SIZE, LOCAL_RANK), pids in PIDS
  local n=$1 name=$2 vars=(); shift 2
  while [ "$1" != -- ]; do vars+=("$1"); shift; done; shift
  PIDS=()
  for r in $(seq 0 $((n - 1))); do env "${vars[@]}" RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r "$@" 2>"$T/$name.$r.err" & PIDS+=($!); done
}
all_ok() { local rc=0; for p in "${PIDS[@]}"; do wait "$p" || rc=$?; done; return $rc; }
ends_within() {  # ends_within PID SECONDS: 0 when PID is gone in time
  for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}
