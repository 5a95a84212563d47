#!/usr/bin/env bash
# On a real one-node Slurm cluster started here (tests/slurm_cluster.sh; tests/test_slurm.sh BUILD_DIR SOURCE_DIR):
# tools/slurm/train.sbatch with 2 CPU tasks gives the local run's adapter, a task killed under srun ends the
# job, and srun without PMIx is refused by name.
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

# srun without PMIx: each task would be a world of its own
srun -n 2 --mpi=none "$BIN" train "${LORA[@]}" --out "$T/nopmi" >/dev/null 2>"$T/nopmi.err"
grep -q "use srun --mpi=pmix" "$T/nopmi.err" && ok "srun --mpi=none is refused with the fix" || bad "srun --mpi=none: $(tail -2 "$T/nopmi.err")"
finish
