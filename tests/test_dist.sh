#!/usr/bin/env bash
# Data-parallel training on the CPU over MPI (tests/test_dist.sh BUILD_DIR SOURCE_DIR): ranks give one process's
# losses and result (LoRA with dropout and accumulation, full fine-tuning), a rank killed or stopped ends the run
# within seconds, --resume after it gives the uninterrupted run exactly, a different rank count continues, and the
# launch mistakes are refused by name.
source "$(dirname "$0")/harness.sh"
MPIRUN=(mpirun -np 2 --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
command -v mpirun >/dev/null || { echo "FAIL mpirun is not installed (tools/setup.sh installs openmpi-bin)"; exit 1; }
source "$(dirname "$0")/dist_harness.sh"
LORA=(--model "$SRC/tests/fixtures/tiny/llama" --train "$DATA/dates.train.jsonl" --val "$DATA/dates.val.jsonl" --epochs 1 --lr 2e-3
      --tokens-per-step 256 --dropout 0.1 --grad-accum 2)
FULL=(--model "$SRC/tests/fixtures/tiny/llama" --method full --train "$DATA/dates.train.jsonl" --val "$DATA/dates.val.jsonl" --epochs 1
      --lr 1e-3 --tokens-per-step 256)

"$BIN" train "${LORA[@]}" --out "$T/lora1" 2>/dev/null
"$BIN" train "${LORA[@]}" --out "$T/lora2" --ranks 2 2>"$T/lora2.err"
same "LoRA, --ranks 2 (whole sequences: grad-accum 2) vs one process (dropout on)" "$T/lora2" "$T/lora1"
[ "$(grep -c "loaded" "$T/lora2.err")" = 1 ] && grep -q "2 data-parallel ranks" "$T/lora2.err" &&
  ok "progress comes from rank 0 alone" || bad "progress lines: $(head -5 "$T/lora2.err")"
"$BIN" train "${LORA[@]}" --out "$T/lora3" --ranks 3 2>/dev/null
same "LoRA, --ranks 3 (fewer sequences than ranks: split by records) vs one process" "$T/lora3" "$T/lora1"
"$BIN" train "${FULL[@]}" --out "$T/full1" 2>/dev/null
"${MPIRUN[@]}" "$BIN" train "${FULL[@]}" --out "$T/full2" 2>"$T/full2.err"
grep -q "sharded over the ranks (ZeRO-1): 0.4 MiB on this rank, not 0.8 MiB" "$T/full2.err" && ok "full fine-tuning on 2 ranks shards AdamW's moments (ZeRO-1): half on each" ||
  bad "ZeRO-1: $(grep -v 'train: step' "$T/full2.err" | tail -2)"
same "full fine-tuning, mpirun -np 2 (ZeRO-1) vs one process" "$T/full2" "$T/full1"
# ZeRO-1 against whole moments on every rank: the same run, and the same checkpoint file byte for byte (rank 0
# gathers the moments, so a resume may take any rank count)
"${MPIRUN[@]}" "$BIN" train "${FULL[@]}" --out "$T/full2z0" --zero 0 --save-every 30 2>/dev/null
"${MPIRUN[@]}" "$BIN" train "${FULL[@]}" --out "$T/full2z1" --save-every 30 2>/dev/null
same "ZeRO-1 vs --zero 0 on 2 ranks: exactly" "$T/full2z1" "$T/full2z0" --tol 0
cmp -s "$T/full2z0/checkpoint/state-60.safetensors" "$T/full2z1/checkpoint/state-60.safetensors" &&
  ok "ZeRO-1's checkpoint (moments gathered on rank 0) = the unsharded one, byte for byte" || bad "ZeRO-1's checkpoint differs from the unsharded one"

# batch inference on ranks: the answers in input order, as one process writes them (sampling on, 2 samples each)
head -12 "$DATA/dates.coverage.jsonl" >"$T/prompts.jsonl"
GEN=(--model "$SRC/tests/fixtures/tiny/llama.gguf" --input "$T/prompts.jsonl" --max-tokens 24 --temperature 0.8 --samples 2 --batch 4)
"$BIN" generate "${GEN[@]}" --output "$T/gen1.jsonl" 2>/dev/null
for n in 2 3; do
  "$BIN" generate "${GEN[@]}" --output "$T/gen$n.jsonl" --ranks $n 2>/dev/null
  [ -s "$T/gen1.jsonl" ] && cmp -s "$T/gen1.jsonl" "$T/gen$n.jsonl" && ok "generate --ranks $n: the same $(wc -l <"$T/gen1.jsonl") answers, in input order" ||
    bad "generate --ranks $n differs from one process"
done
# a rank that is slow but alive (stopped for longer than --dist-timeout in the middle of its share) is waited for:
# the deadline measures a hung collective, not the others' work
head -40 "$DATA/dates.coverage.jsonl" >"$T/more.jsonl"
SLOW=(--model "$SRC/tests/fixtures/tiny/llama.gguf" --input "$T/more.jsonl" --max-tokens 48 --temperature 0.8 --samples 6 --batch 4)
"$BIN" generate "${SLOW[@]}" --output "$T/slow1.jsonl" 2>/dev/null
"$BIN" generate "${SLOW[@]}" --output "$T/slow2.jsonl" --ranks 2 --dist-timeout 2 2>"$T/slow2.err" & p=$!
kids=($(ranks_of $p))
for _ in $(seq 400); do grep -q "generate: 16/" "$T/slow2.err" && break; sleep 0.02; done
kill -STOP "${kids[1]}"; sleep 4; kill -CONT "${kids[1]}"
wait $p; rc=$?
[ "$rc" = 0 ] && cmp -s "$T/slow1.jsonl" "$T/slow2.jsonl" && ok "a rank stopped 4 s (> --dist-timeout 2) mid-share is waited for: the same answers" ||
  bad "slow rank: exit $rc; $(tail -2 "$T/slow2.err")"
expect_err "generate --ranks with one --prompt" "one --prompt runs on one process" "$BIN" generate --model "$SRC/tests/fixtures/tiny/llama.gguf" --prompt hi --ranks 2

# kill -9 one rank mid-run: mpirun ends the other and names the rank; --resume then gives the uninterrupted run
LONG=(--model "$SRC/tests/fixtures/tiny/llama" --train "$DATA/dates.train.jsonl" --val "$DATA/dates.val.jsonl" --epochs 3 --lr 2e-3
      --tokens-per-step 256 --save-every 40 --eval-every 1000)
"$BIN" train "${LONG[@]}" --out "$T/whole" --ranks 2 2>/dev/null
"$BIN" train "${LONG[@]}" --out "$T/killed" --ranks 2 2>"$T/killed.err" & p=$!
kids=($(ranks_of $p))
for _ in $(seq 300); do [ -f "$T/killed/checkpoint/state.json" ] && break; sleep 0.05; done
kill -9 "${kids[1]}"
if ends_within $p 30; then wait $p; rc=$?; else rc=timeout; kill -9 $p; fi
[ "$rc" != 0 ] && [ "$rc" != timeout ] && grep -q "rank 1" "$T/killed.err" &&
  ok "kill -9 of rank 1: the run ended (exit $rc) naming it" || bad "kill -9 of rank 1: exit $rc; $(tail -3 "$T/killed.err")"
pgrep -f "$T/killed" >/dev/null && bad "a rank outlived the run" || ok "no rank is left behind"
cp -r "$T/killed" "$T/killed-n1"
"$BIN" train "${LONG[@]}" --out "$T/killed" --ranks 2 --resume 2>"$T/resume.err"
grep -q "resuming after step" "$T/resume.err" && same "--resume with the same ranks: the uninterrupted run exactly" "$T/killed" "$T/whole" --tol 0 ||
  bad "resume: $(tail -3 "$T/resume.err")"
"$BIN" train "${LONG[@]}" --out "$T/killed-n1" --resume 2>"$T/resume1.err"
grep -q "written by 2 ranks, this run has 1" "$T/resume1.err" && ok "a resume on 1 rank says it has fewer ranks than the checkpoint" ||
  bad "resume on 1 rank: $(grep -v step "$T/resume1.err" | tail -3)"
same "--resume on 1 rank continues the same run (rounding aside)" "$T/killed-n1" "$T/whole" --tol 1e-2

# a rank that stops answering (SIGSTOP), while joining and mid-run: the other gives up after --dist-timeout
for when in join step; do
  "$BIN" train "${LONG[@]}" --out "$T/stopped-$when" --ranks 2 --dist-timeout 3 2>"$T/stopped-$when.err" & p=$!
  kids=($(ranks_of $p))
  [ $when = step ] && for _ in $(seq 300); do grep -q "step 5/" "$T/stopped-$when.err" && break; sleep 0.05; done
  kill -STOP "${kids[1]}"
  if ends_within $p 30; then wait $p; rc=$?; else rc=timeout; kill -9 $p; fi
  [ "$rc" != 0 ] && [ "$rc" != timeout ] && grep -q "waited 3 s for the other ranks" "$T/stopped-$when.err" &&
    ok "rank 1 stopped ($when): the run ended within 30 s (exit $rc) with the deadline's error" ||
    bad "rank 1 stopped ($when): exit $rc; $(grep -v "train: step" "$T/stopped-$when.err" | tail -3)"
  kill -9 "${kids[@]}" 2>/dev/null
done


# ranks started as torchrun or srun without PMIx start them, meeting over TCP: rank 0 at MASTER_ADDR:MASTER_PORT,
# or through a rendezvous file in --out
by_hand 3 tcp3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$(free_port) -- "$BIN" train "${LORA[@]}" --out "$T/tcp3"
all_ok && grep -q "3 data-parallel ranks (gradients summed by TCP)" "$T/tcp3.0.err" && ! grep -q "train:" "$T/tcp3.1.err" &&
  same "3 ranks over TCP (MASTER_ADDR/MASTER_PORT) vs one process" "$T/tcp3" "$T/lora1" || bad "3 ranks over TCP: $(tail -3 "$T"/tcp3.*.err)"
# a rendezvous file an earlier launch left behind, pointing at a port nobody listens on; rank 1 starts first and
# reads it: it must wait for this launch's rank 0, not take the stale address
mkdir -p "$T/tcpfile"
printf 'llamaduo-rendezvous 1\nlaunch user:earlier\nworld 2\nhost 127.0.0.1\nport %s\n' "$(free_port)" >"$T/tcpfile/.llamaduo-rendezvous"
LLAMADUO_RUN_ID=now-$$ RANK=1 WORLD_SIZE=2 "$BIN" train "${LORA[@]}" --out "$T/tcpfile" 2>"$T/tcpfile.1.err" & p1=$!
sleep 1
LLAMADUO_RUN_ID=now-$$ RANK=0 WORLD_SIZE=2 "$BIN" train "${LORA[@]}" --out "$T/tcpfile" 2>"$T/tcpfile.0.err"; rc0=$?
wait $p1 && [ $rc0 = 0 ] && [ ! -e "$T/tcpfile/.llamaduo-rendezvous" ] &&
  same "2 ranks through a rendezvous file in --out, past an earlier launch's stale file (removed once all joined)" "$T/tcpfile" "$T/lora1" ||
  bad "rendezvous file: rank 0 exit $rc0; $(tail -2 "$T"/tcpfile.*.err)"
by_hand 2 tcpgen MASTER_ADDR=127.0.0.1 MASTER_PORT=$(free_port) -- "$BIN" generate "${GEN[@]}" --output "$T/tcpgen.jsonl"
all_ok && cmp -s "$T/gen1.jsonl" "$T/tcpgen.jsonl" && ok "generate on 2 ranks over TCP: the same answers in input order" ||
  bad "generate over TCP: $(tail -2 "$T"/tcpgen.*.err)"
# a TCP rank killed, or stopped, mid-run: the other ends within seconds naming it
for how in KILL STOP; do
  by_hand 2 tcp$how MASTER_ADDR=127.0.0.1 MASTER_PORT=$(free_port) -- "$BIN" train "${LONG[@]}" --out "$T/tcp$how" --dist-timeout 3
  for _ in $(seq 300); do grep -q "step 5/" "$T/tcp$how.0.err" && break; sleep 0.05; done
  kill -$how "${PIDS[1]}"
  if ends_within "${PIDS[0]}" 30; then wait "${PIDS[0]}"; rc=$?; else rc=timeout; fi
  want=$([ $how = KILL ] && echo "rank 1 closed its connection" || echo "waited 3 s for rank 1")
  [ "$rc" != 0 ] && [ "$rc" != timeout ] && grep -q "$want" "$T/tcp$how.0.err" &&
    ok "TCP rank 1 sent SIG$how mid-run: rank 0 ended (exit $rc): $want" || bad "TCP rank 1 SIG$how: exit $rc; $(grep -v 'train: step' "$T/tcp$how.0.err" | tail -2)"
  kill -9 "${PIDS[@]}" 2>/dev/null; wait "${PIDS[@]}" 2>/dev/null
done
# --ranks where there is no mpirun: the ranks are this process's children, over TCP; one killed ends the rest
PATH=/nonexistent "$BIN" train "${LORA[@]}" --out "$T/nompirun" --ranks 2 2>"$T/nompirun.err" &&
  grep -q "2 data-parallel ranks (gradients summed by TCP)" "$T/nompirun.err" &&
  same "--ranks 2 with no mpirun on PATH (child ranks over TCP) vs one process" "$T/nompirun" "$T/lora1" || bad "--ranks 2 without mpirun: $(tail -2 "$T/nompirun.err")"
PATH=/nonexistent "$BIN" train "${LONG[@]}" --out "$T/nompikill" --ranks 2 2>"$T/nompikill.err" & p=$!
for _ in $(seq 300); do grep -q "step 5/" "$T/nompikill.err" && break; sleep 0.05; done
victim=$(for k in $(pgrep -P $p); do grep -qz "^RANK=1$" /proc/$k/environ 2>/dev/null && echo $k; done | head -1)
# the child ranks meet on the loopback address alone (nothing off this machine can reach their ports)
conns=$(ss -Htnp state established 2>/dev/null | grep -E "pid=($(pgrep -P $p | paste -sd'|'))," | awk '{print $3, $4}')
[ -n "$conns" ] && ! echo "$conns" | tr ' ' '\n' | grep -vq '^127\.0\.0\.1:' &&
  ok "child ranks talk over 127.0.0.1 alone ($(echo "$conns" | wc -l) connections)" || bad "child ranks' connections: ${conns:-none found}"
[ -n "$victim" ] && kill -9 "$victim"
if ends_within $p 30; then wait $p; rc=$?; else rc=timeout; kill -9 $p; fi
[ -n "$victim" ] && [ "$rc" != 0 ] && [ "$rc" != timeout ] && grep -q "rank 1 (pid $victim) was killed by signal 9" "$T/nompikill.err" &&
  ok "child rank 1 killed: the launcher ended the other (exit $rc) naming it" || bad "child rank killed: exit $rc; $(tail -2 "$T/nompikill.err")"
pgrep -f "$T/nompikill" >/dev/null && bad "a child rank outlived the launcher" || ok "no child rank is left behind"
# ZeRO-1 over TCP, killed mid-run and resumed: the uninterrupted run exactly; the same checkpoint resumed on 1 rank
LONGFULL=(--model "$SRC/tests/fixtures/tiny/llama" --method full --train "$DATA/dates.train.jsonl" --epochs 2 --lr 1e-3
          --tokens-per-step 256 --save-every 30 --eval-every 1000)
PATH=/nonexistent "$BIN" train "${LONGFULL[@]}" --out "$T/zwhole" --ranks 3 2>/dev/null
PATH=/nonexistent "$BIN" train "${LONGFULL[@]}" --out "$T/zkilled" --ranks 3 2>"$T/zkilled.err" & p=$!
for _ in $(seq 600); do grep -q "step 35/" "$T/zkilled.err" && break; sleep 0.05; done
kill -9 $(pgrep -P $p) 2>/dev/null; wait $p 2>/dev/null
cp -r "$T/zkilled" "$T/zkilled1"
PATH=/nonexistent "$BIN" train "${LONGFULL[@]}" --out "$T/zkilled" --ranks 3 --resume 2>"$T/zresume.err"
grep -q "resuming after step 30" "$T/zresume.err" && same "ZeRO-1 on 3 TCP ranks killed at step 35, --resume: the uninterrupted run exactly" "$T/zkilled" "$T/zwhole" --tol 0 ||
  bad "ZeRO-1 resume: $(grep -v 'train: step' "$T/zresume.err" | tail -2)"
"$BIN" train "${LONGFULL[@]}" --out "$T/zkilled1" --resume 2>"$T/zresume1.err"
grep -q "written by 3 ranks, this run has 1" "$T/zresume1.err" && same "ZeRO-1's checkpoint resumed on 1 rank continues the run (rounding aside)" "$T/zkilled1" "$T/zwhole" --tol 1e-3 ||
  bad "ZeRO-1 resume on 1 rank: $(grep -v 'train: step' "$T/zresume1.err" | tail -2)"
port=$(free_port)
MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=0 WORLD_SIZE=2 "$BIN" train "${LORA[@]}" --out "$T/alone" --dist-timeout 2 2>"$T/alone.err" &&
  bad "rank 0 alone: exit 0" || { grep -q "waited 2 s (--dist-timeout) for the other ranks to join, and 0 of 1 came" "$T/alone.err" &&
  ok "rank 0 whose peer never comes gives up after --dist-timeout" || bad "rank 0 alone: $(tail -2 "$T/alone.err")"; }
expect_err "rank 1 whose rank 0 never comes" "could not reach rank 0 at 127.0.0.1:$port within 2 s" \
  env MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=1 WORLD_SIZE=2 "$BIN" train "${LORA[@]}" --out "$T/alone1" --dist-timeout 2
expect_err "a rendezvous file without a launch id" "needs this launch's id" env RANK=0 WORLD_SIZE=2 "$BIN" train "${LORA[@]}" --out "$T/x6" --dist-init "file:$T/x6.rv"
expect_err "--dist-init with an unknown method" "expected auto, mpi, tcp://HOST:PORT or file:PATH" env RANK=0 WORLD_SIZE=2 "$BIN" train "${LORA[@]}" --out "$T/x7" --dist-init udp://x
expect_err "--dist-init tcp:// without a port" "expected tcp://HOST:PORT" env RANK=0 WORLD_SIZE=2 "$BIN" train "${LORA[@]}" --out "$T/x8" --dist-init tcp://localhost

# launch mistakes
expect_err "RANK/WORLD_SIZE with no rendezvous" "no way to meet" env RANK=0 WORLD_SIZE=2 "$BIN" train "${LORA[@]}" --out "$T/x1"
expect_err "mpirun -np 2 with --ranks 3" "ranks 3, but mpirun started 2" "${MPIRUN[@]}" "$BIN" train "${LORA[@]}" --out "$T/x3" --ranks 3
expect_err "a rank count that is not one" "WORLD_SIZE=two" env RANK=0 WORLD_SIZE=two "$BIN" train "${LORA[@]}" --out "$T/x4"
expect_err "a MASTER_PORT that is no port (named as the variable)" "MASTER_ADDR and MASTER_PORT tcp://127.0.0.1:99999: expected" \
  env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=99999 "$BIN" train "${LORA[@]}" --out "$T/badport"
expect_err "--gpus without a GPU" "no CUDA device" "$BIN" train "${LORA[@]}" --out "$T/x5" --gpus 2
finish
