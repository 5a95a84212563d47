#!/usr/bin/env bash
# On a real one-node Slurm cluster started here (tests/slurm_cluster.sh; tests/test_slurm.sh BUILD_DIR SOURCE_DIR):
# tools/slurm/train.sbatch with 2 CPU tasks gives the local run's adapter, a task killed under srun ends the
# job, and srun without PMIx meets over TCP instead.
source "$(dirname "$0")/harness.sh"
SRC=$(cd "$SRC" && pwd); BIN=$(realpath "$BIN")  # the jobs run in another directory
source "$SRC/tests/slurm_cluster.sh"
trap 'slurm_stop; kill "${pids[@]}" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
command -v slurmctld >/dev/null || { echo "FAIL slurm-wlm is not installed (tools/setup.sh installs it)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "FAIL the one-node Slurm cluster runs as root"; exit 1; }
slurm_start "$T/slurm" && ok "a one-node Slurm cluster is up ($(sinfo -h -o '%N %c CPUs'))" || { bad "Slurm did not start"; finish; exit 1; }
export LLAMADUO="$BIN"
DATA="$SRC/configs/data"
LORA=(--model "$SRC/tests/fixtures/tiny/llama" --train "$DATA/dates.train.jsonl" --val "$DATA/dates.val.jsonl" --epochs 1 --lr 2e-3
      --tokens-per-step 256 --dropout 0.1 --grad-accum 2)
cd "$T"

"$BIN" train "${LORA[@]}" --out "$T/local" 2>/dev/null
if sbatch --wait -n 2 -o "$T/train-%j.log" "$SRC/tools/slurm/train.sbatch" --device cpu "${LORA[@]}" --out "$T/sbatch" >"$T/sbatch.out"; then
  ok "train.sbatch with 2 tasks finished ($(cat "$T/sbatch.out"))"
else
  bad "train.sbatch failed: $(tail -5 "$T"/train-*.log)"
fi
grep -q "2 data-parallel ranks" "$T"/train-*.log && ok "the job trained on 2 ranks" || bad "the job's log: $(head -5 "$T"/train-*.log)"
if out=$(python3 "$SRC/tests/compare_runs.py" "$T/sbatch" "$T/local"); then ok "train.sbatch (2 tasks) vs the local run: $out"; else bad "train.sbatch vs local: $out"; fi

# a task killed under srun: --kill-on-bad-exit ends the other
LONG=(--model "$SRC/tests/fixtures/tiny/llama" --train "$DATA/dates.train.jsonl" --epochs 20 --tokens-per-step 256)
jid=$(sbatch --parsable -n 2 -o "$T/killed-%j.log" "$SRC/tools/slurm/train.sbatch" --device cpu "${LONG[@]}" --out "$T/killed")
for _ in $(seq 300); do grep -q "train: step 3/" "$T/killed-$jid.log" 2>/dev/null && break; sleep 0.1; done
victim=$(pgrep -f "train --device cpu.*--out $T/killed" | while read -r p; do
  grep -qz "^SLURM_PROCID=1$" /proc/$p/environ 2>/dev/null && echo $p; done | head -1)
[ -n "$victim" ] && kill -9 "$victim"
t0=$SECONDS
for _ in $(seq 300); do squeue -h -j "$jid" 2>/dev/null | grep -q . || break; sleep 0.1; done
state=$(scontrol show job "$jid" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
[ -n "$victim" ] && [ $((SECONDS - t0)) -le 30 ] && [ "$state" = FAILED ] &&
  ok "task 1 killed: job $jid ended in $((SECONDS - t0)) s as $state" || bad "task 1 (pid ${victim:-none}) killed: job $jid is ${state:-?} after $((SECONDS - t0)) s"
pgrep -f "out $T/killed" >/dev/null && bad "a task outlived its job" || ok "no task is left behind"

# srun without PMIx (as train.sbatch runs it where srun has none): the tasks meet over TCP through a rendezvous
# file in --out, and train as the local run did
if LLAMADUO_SRUN_MPI=none sbatch --wait -n 2 -o "$T/nopmi-%j.log" "$SRC/tools/slurm/train.sbatch" --device cpu "${LORA[@]}" --out "$T/nopmi" >/dev/null &&
  grep -q "2 data-parallel ranks (gradients summed by TCP)" "$T"/nopmi-*.log && out=$(python3 "$SRC/tests/compare_runs.py" "$T/nopmi" "$T/local"); then
  ok "train.sbatch with srun --mpi=none (ranks over TCP) vs the local run: $out"
else
  bad "srun --mpi=none: $(tail -3 "$T"/nopmi-*.log) ${out:-}"
fi
expect_refused() {  # expect_refused NAME PATTERN COMMAND...
  local name=$1 pat=$2; shift 2
  if "$@" >/dev/null 2>"$T/err"; then bad "$name: exit 0"; elif grep -q "$pat" "$T/err"; then ok "$name refused"; else bad "$name: $(tail -2 "$T/err")"; fi
}
expect_refused "srun --mpi=none with --dist-init mpi" "use srun --mpi=pmix" srun -n 2 --mpi=none "$BIN" train "${LORA[@]}" --out "$T/nopmi2" --dist-init mpi

# llamaduo run with student.launcher: slurm — the orchestrator here, train (2 ranks) and infer as jobs
export LD_FAKE_KEY="sk-llamaduo-FAKE-51a77e0c"
fault_server svc --latency 0.02 --liveness 0.5
head -24 "$DATA/dates.coverage.jsonl" >"$T/coverage.jsonl"
config() {  # config FILE DIR EPOCHS
  cat >"$1" <<YAML
run: {dir: $2, coverage: $T/coverage.jsonl, test_ratio: 0.25, max_rounds: 1, samples: 1, probe: 0, ceiling: false}
student:
  model: $SRC/tests/fixtures/tiny/llama.gguf
  launcher: slurm
  threads: 1
  train: {epochs: $3, lr: 0.01, tokens_per_step: 128, max_len: 128, dropout: 0}
  infer: {max_tokens: 16, temperature: 0, batch: 4}
slurm: {gpus: 0, tasks: 2, poll: 0.3, time: "10:00", extra: ["--comment=llamaduo-test"]}
service: {provider: anthropic, base_url: "http://127.0.0.1:$PORT", model: teacher-1, api_key_env: LD_FAKE_KEY, concurrency: 2}
task: {description: Convert free-text dates to ISO 8601 dates.}
synth: {strategy: uniform}
judge: {judgments_per_answer: 1, threshold: 90}
YAML
}
jobs_named() { squeue -h -t all -o %j 2>/dev/null | grep -c -- "-r1-$1\$"; }  # jobs (any state) of stage $1
ledger_job() {  # ledger_job RUNDIR STAGE: the job id the ledger holds for round 1's STAGE
  python3 -c "
import sqlite3, sys
try: r = sqlite3.connect(sys.argv[1] + '/ledger.sqlite', timeout=5).execute(\"select value from run where key=?\", ('slurm_job.r1.' + sys.argv[2],)).fetchone()
except Exception: r = None
print(r[0] if r else '')" "$1" "$2"
}
config "$T/whole.yaml" "$T/whole" 2
# a site whose sbatch adds a warning to every submission, and a controller that does not answer three looks
mkdir -p "$T/bin"
printf '#!/bin/sh\necho "sbatch: warning: this site adds a message" >&2\nexec %s "$@"\n' "$(command -v sbatch)" >"$T/bin/sbatch"
cat >"$T/bin/squeue" <<EOF
#!/bin/sh
n=\$(cat "$T/squeue.n" 2>/dev/null || echo 0); echo \$((n + 1)) >"$T/squeue.n"
if [ "\$n" -ge 3 ] && [ "\$n" -le 5 ]; then echo "squeue: error: slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1; fi
exec $(command -v squeue) "\$@"
EOF
chmod +x "$T/bin/sbatch" "$T/bin/squeue"
if PATH="$T/bin:$PATH" "$BIN" run "$T/whole.yaml" >"$T/whole.out" 2>&1; then ok "llamaduo run with launcher slurm completes"; else bad "run (slurm): $(tail -5 "$T/whole.out")"; fi
grep -q "Slurm does not answer" "$T/whole.out" && ok "a controller that does not answer is waited out, and said so" ||
  bad "no word of the unanswered squeue: $(grep -i slurm "$T/whole.out" | head -3)"
grep -q "round 1: train: submitted Slurm job" "$T/whole.out" && grep -q "round 1: infer: submitted Slurm job" "$T/whole.out" &&
  ok "train and infer went to Slurm as jobs" || bad "no jobs submitted: $(grep Slurm "$T/whole.out" | head -3)"
tj=$(ledger_job "$T/whole" train)
[ -n "$tj" ] && grep -q "2 data-parallel ranks" "$T/whole/rounds/01/train-$tj.log" && ok "the ledger holds the train job ($tj), which trained on 2 ranks" ||
  bad "train job '$tj': $(head -3 "$T/whole/rounds/01/train-$tj.log" 2>&1)"
[ -s "$T/whole/rounds/01/metrics.json" ] && ok "the round was judged from the jobs' results" || bad "no round metrics"

# the orchestrator killed with -9 while the train job runs: the rerun attaches, no second job, the same results
config "$T/kill.yaml" "$T/kill" 2
"$BIN" run "$T/kill.yaml" >"$T/kill.out" 2>&1 & p=$!
for _ in $(seq 300); do [ -n "$(ledger_job "$T/kill" train)" ] && break; sleep 0.05; done
kill -9 $p; wait $p 2>/dev/null
kj=$(ledger_job "$T/kill" train); kstate=$(scontrol show job "$kj" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
"$BIN" run "$T/kill.yaml" >"$T/kill2.out" 2>&1 && ok "the rerun after kill -9 (train job $kj was $kstate) completes" || bad "rerun: $(tail -5 "$T/kill2.out")"
grep -Eq "attaching to Slurm job $kj|Slurm job $kj completed: its results are taken" "$T/kill2.out" && ok "the rerun took up job $kj instead of submitting it again" ||
  bad "rerun: $(grep -i slurm "$T/kill2.out" | head -3)"
n=$(jobs_named train); [ "$n" = 2 ] && ok "one train job for each of the two runs, none twice" || bad "$n train jobs for the two runs"
if cmp -s "$T/whole/rounds/01/infer.jsonl" "$T/kill/rounds/01/infer.jsonl" && cmp -s "$T/whole/rounds/01/adapter/adapter_model.safetensors" "$T/kill/rounds/01/adapter/adapter_model.safetensors"; then
  ok "the killed and rerun run ends with the uninterrupted run's adapter and answers"
else bad "the killed run's results differ from the uninterrupted run's"; fi

# a job cancelled with scancel: the run stops naming it and its state
config "$T/cancel.yaml" "$T/cancel" 400
"$BIN" run "$T/cancel.yaml" >"$T/cancel.out" 2>&1 & p=$!
for _ in $(seq 600); do grep -q "Slurm job [0-9]* RUNNING" "$T/cancel.out" && break; sleep 0.05; done
cj=$(ledger_job "$T/cancel" train); scancel "$cj"
if ends_in() { for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }; ends_in $p 60; then wait $p; rc=$?; else rc=timeout; kill -9 $p; fi
[ "$rc" != 0 ] && [ "$rc" != timeout ] && grep -q "Slurm job $cj ended CANCELLED" "$T/cancel.out" && ok "scancel of job $cj: the run stopped (exit $rc) naming the job and its state" ||
  bad "scancel: exit $rc; $(tail -4 "$T/cancel.out")"

# SIGTERM to the orchestrator cancels its job
config "$T/term.yaml" "$T/term" 400
"$BIN" run "$T/term.yaml" >"$T/term.out" 2>&1 & p=$!
for _ in $(seq 600); do grep -q "Slurm job [0-9]* RUNNING" "$T/term.out" && break; sleep 0.05; done
tj=$(ledger_job "$T/term" train); kill -TERM $p
if ends_in $p 60; then wait $p; rc=$?; else rc=timeout; kill -9 $p; fi
for _ in $(seq 100); do st=$(scontrol show job "$tj" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'); [ "$st" = CANCELLED ] && break; sleep 0.1; done
[ "$rc" != 0 ] && [ "$st" = CANCELLED ] && grep -q "cancelled Slurm job $tj" "$T/term.out" && ok "SIGTERM: the run cancelled job $tj and stopped (exit $rc)" ||
  bad "SIGTERM: exit $rc, job $tj $st; $(tail -3 "$T/term.out")"

# slurm settings that make no sense are refused before anything starts
bad_config() {  # bad_config NAME PATTERN SED-EXPRESSION
  sed "$3" "$T/whole.yaml" >"$T/bad.yaml"
  if "$BIN" run --check "$T/bad.yaml" >"$T/bad.out" 2>&1; then bad "$1: accepted"; elif grep -q "$2" "$T/bad.out"; then ok "$1 refused"; else bad "$1: $(tail -1 "$T/bad.out")"; fi
}
bad_config "a slurm section with launcher local" "student.launcher' is local" 's/launcher: slurm/launcher: local/'
bad_config "slurm.extra that is not a list" "slurm.extra' must be a list" 's/extra: \[.*\]}/extra: "--qos=x"}/'
bad_config "slurm.extra with a non-option" "each item is one sbatch option" 's/--comment=llamaduo-test/qos high/'
bad_config "slurm.gpus out of range" "slurm.gpus" 's/gpus: 0/gpus: 999/'
finish
