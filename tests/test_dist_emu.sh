#!/usr/bin/env bash
# Data-parallel training on the GPU path with NCCL, on the CUDA emulator (tests/test_dist_emu.sh BUILD_DIR SOURCE_DIR):
# two emulated GPUs, one rank each, summing over the emulator's NCCL, against one emulated GPU; ranks started by hand
# meeting over TCP; the gradients summed during the backward pass in buckets; a rank stopped inside NCCL's all-reduce; full fine-tuning with ZeRO-1 against one GPU, the CPU and
# --zero 0, and its checkpoint resumed on one GPU and on two. (The CPU path over MPI is tests/test_dist.sh.)
source "$(dirname "$0")/harness.sh"
source "$(dirname "$0")/dist_harness.sh"
# --gpus N starts its ranks with mpirun, and ranks_of finds them by OpenMPI's rank variable
command -v mpirun >/dev/null || { echo "FAIL mpirun is not installed (tools/setup.sh installs openmpi-bin)"; exit 1; }
EMU="$(dirname "$BIN")/llamaduo_emu"
[ -x "$EMU" ] || { echo "FAIL no llamaduo_emu next to $BIN (configure with LLAMADUO_CUDA_EMU on)"; exit 1; }
head -40 "$DATA/dates.train.jsonl" >"$T/small.train.jsonl"; head -8 "$DATA/dates.val.jsonl" >"$T/small.val.jsonl"
GPU_ANY=(--model "$SRC/tests/fixtures/tiny/llama" --train "$T/small.train.jsonl" --val "$T/small.val.jsonl" --epochs 1 --lr 2e-3
         --tokens-per-step 256 --dropout 0.1 --grad-accum 2 --device cuda)
GPU=("${GPU_ANY[@]}" --precision fp32)
# bf16 is the GPU's default (the runs below ask for fp32, the reference mode, so that they can be compared exactly)
"$EMU" train "${GPU_ANY[@]}" --out "$T/gpudefault" 2>"$T/gpudefault.err"
grep -q "on the GPU (CUDA emulator.*base weights in bf16" "$T/gpudefault.err" && ok "the GPU trains in bf16 by default" ||
  bad "the GPU's default precision: $(grep -v 'train: step' "$T/gpudefault.err" | tail -2)"
"$EMU" train "${GPU[@]}" --out "$T/gpu1" 2>/dev/null
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GPU[@]}" --out "$T/gpu2" --gpus 2 2>"$T/gpu2.err"
grep -q "2 data-parallel ranks (gradients summed by NCCL)" "$T/gpu2.err" && grep -q "on the GPU (CUDA emulator" "$T/gpu2.err" &&
  same "--gpus 2 over NCCL (emulator) vs one GPU" "$T/gpu2" "$T/gpu1" || bad "--gpus 2 (emulator): $(grep -v 'train: step' "$T/gpu2.err" | tail -3)"
"$EMU" train "${GPU[@]}" --out "$T/gpu1nccl" --gpus 1 2>"$T/gpu1nccl.err"
grep -q "1 data-parallel rank (gradients summed by NCCL)" "$T/gpu1nccl.err" &&
  same "--gpus 1 (NCCL with one rank) vs no NCCL: exactly" "$T/gpu1nccl" "$T/gpu1" --tol 0 || bad "--gpus 1: $(grep -v 'train: step' "$T/gpu1nccl.err" | tail -3)"
# the overlap: the default run's one bucket and a bucket a layer, both started during the last micro-batch's backward
# pass, give the bits of the sum after it
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GPU[@]}" --out "$T/gpu2o0" --gpus 2 --overlap 0 2>"$T/gpu2o0.err"
! grep -q "during the backward pass" "$T/gpu2o0.err" && grep -q "during the backward pass, in 1 bucket " "$T/gpu2.err" &&
  same "--gpus 2, the gradients summed during the backward pass (1 bucket) vs after it (--overlap 0): exactly" "$T/gpu2" "$T/gpu2o0" --tol 0 ||
  bad "--overlap 0: $(grep -v 'train: step' "$T/gpu2o0.err" | tail -3)"
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GPU[@]}" --out "$T/gpu2b0" --gpus 2 --bucket-mb 0 2>"$T/gpu2b0.err"
grep -q "during the backward pass, in 2 buckets (--bucket-mb 0)" "$T/gpu2b0.err" &&
  same "--gpus 2, a bucket a layer vs the sum after the backward pass: exactly" "$T/gpu2b0" "$T/gpu2o0" --tol 0 ||
  bad "--bucket-mb 0: $(grep -v 'train: step' "$T/gpu2b0.err" | tail -3)"
# the same two ranks started by hand: NCCL's id reaches rank 1 over TCP instead of MPI
by_hand 2 gputcp LLAMADUO_EMU_DEVICES=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$(free_port) -- "$EMU" train "${GPU[@]}" --out "$T/gputcp" --gpus 2
all_ok && grep -q "2 data-parallel ranks (gradients summed by NCCL)" "$T/gputcp.0.err" &&
  same "--gpus 2 ranks started by hand (NCCL's id over TCP) vs mpirun's" "$T/gputcp" "$T/gpu2" --tol 0 || bad "NCCL over a TCP rendezvous: $(tail -2 "$T"/gputcp.*.err)"
LLAMADUO_EMU_DEVICES=2 expect_err "--gpus 3 on two GPUs" "this machine has 2 GPUs" "$EMU" train "${GPU[@]}" --out "$T/gpu3" --gpus 3
LLAMADUO_EMU_DEVICES=2 LLAMADUO_EMU_NCCL_TIMEOUT=3 "$EMU" train "${GPU[@]}" --epochs 20 --out "$T/gpustop" --gpus 2 2>"$T/gpustop.err" & p=$!
kids=($(ranks_of $p))
for _ in $(seq 600); do grep -q "step 2/" "$T/gpustop.err" && break; sleep 0.05; done
kill -STOP "${kids[1]}"
if ends_within $p 30; then wait $p; rc=$?; else rc=timeout; kill -9 $p; fi
[ "$rc" != 0 ] && [ "$rc" != timeout ] && grep -q "NCCL" "$T/gpustop.err" && grep -q "a rank did not arrive" "$T/gpustop.err" &&
  ok "a GPU rank stopped inside NCCL's all-reduce: the run ended (exit $rc) naming the all-reduce" ||
  bad "GPU rank stopped: exit $rc; $(grep -v 'train: step' "$T/gpustop.err" | tail -3)"
kill -9 "${kids[@]}" 2>/dev/null
# full fine-tuning on emulated GPUs: one against the CPU; two with ZeRO-1 (the gradients reduce-scattered, each
# rank's AdamW on its chunk, the weights all-gathered, over the emulator's NCCL) against one GPU and against
# --zero 0, their checkpoints byte for byte, and ZeRO-1's checkpoint resumed on one GPU
GFULL=(--model "$SRC/tests/fixtures/tiny/llama" --method full --train "$T/small.train.jsonl" --val "$T/small.val.jsonl" --epochs 2
       --lr 1e-3 --tokens-per-step 256 --save-every 4 --precision fp32)
"$BIN" train "${GFULL[@]}" --device cpu --out "$T/cfull" 2>/dev/null
"$EMU" train "${GFULL[@]}" --device cuda --out "$T/gfull1" 2>"$T/gfull1.err"
grep -q "on the GPU (CUDA emulator.*trained weights in fp32" "$T/gfull1.err" &&
  same "full fine-tuning on one emulated GPU vs the CPU" "$T/gfull1" "$T/cfull" --tol 1e-4 ||
  bad "full fine-tuning on the GPU: $(grep -v 'train: step' "$T/gfull1.err" | tail -3)"
"$EMU" train "${GFULL[@]}" --device cuda --precision bf16 --out "$T/gfull16" 2>"$T/gfull16.err"
grep -q "fp32 masters, GEMMs in bf16" "$T/gfull16.err" &&
  same "full fine-tuning in bf16 (bf16 copies of fp32 masters) on one emulated GPU vs the CPU's fp32" "$T/gfull16" "$T/cfull" --tol 2e-2 ||
  bad "full fine-tuning in bf16 on the GPU: $(grep -v 'train: step' "$T/gfull16.err" | tail -3)"
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GFULL[@]}" --gpus 2 --out "$T/gfull2" 2>"$T/gfull2.err"
grep -q "summed by NCCL" "$T/gfull2.err" && grep -q "sharded over the ranks (ZeRO-1): 0.4 MiB on this rank, not 0.8 MiB" "$T/gfull2.err" &&
  same "full fine-tuning, --gpus 2 with ZeRO-1 over NCCL (emulator) vs one GPU" "$T/gfull2" "$T/gfull1" ||
  bad "--gpus 2, full fine-tuning: $(grep -v 'train: step' "$T/gfull2.err" | tail -3)"
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GFULL[@]}" --gpus 2 --zero 0 --out "$T/gfull2z0" 2>/dev/null
same "full fine-tuning on 2 GPUs, ZeRO-1 vs --zero 0: exactly" "$T/gfull2" "$T/gfull2z0" --tol 0
# ZeRO-1's buckets go to the ranks whose chunks hold them (reduces), --zero 0's are all-reduced: a bucket for the head,
# one a block and one for the embedding, against the sum after the backward pass
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GFULL[@]}" --gpus 2 --overlap 0 --out "$T/gfull2o0" 2>/dev/null
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GFULL[@]}" --gpus 2 --bucket-mb 0 --out "$T/gfull2b0" 2>"$T/gfull2b0.err"
grep -q "in 4 buckets" "$T/gfull2b0.err" && same "full fine-tuning, ZeRO-1, a bucket a layer vs the reduce-scatter after the backward pass: exactly" "$T/gfull2b0" "$T/gfull2o0" --tol 0 ||
  bad "full fine-tuning, --bucket-mb 0: $(grep -v 'train: step' "$T/gfull2b0.err" | tail -3)"
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GFULL[@]}" --gpus 2 --zero 0 --bucket-mb 0 --out "$T/gfull2z0b0" 2>/dev/null
same "full fine-tuning, --zero 0, a bucket a layer vs ZeRO-1 after the backward pass: exactly" "$T/gfull2z0b0" "$T/gfull2o0" --tol 0
ck=$(ls "$T/gfull2z0/checkpoint/" | grep '^state-')
[ -n "$ck" ] && cmp -s "$T/gfull2z0/checkpoint/$ck" "$T/gfull2/checkpoint/$ck" &&
  ok "ZeRO-1's GPU checkpoint (every rank's moments gathered on rank 0) = the unsharded one, byte for byte ($ck)" ||
  bad "ZeRO-1's GPU checkpoint differs from the unsharded one (${ck:-none written})"
rm -rf "$T/gfullr" && cp -r "$T/gfull2" "$T/gfullr" && rm -rf "$T/gfullr/model"
"$EMU" train "${GFULL[@]}" --device cuda --out "$T/gfullr" --resume 2>"$T/gfullr.err"
grep -q "written by 2 ranks, this run has 1" "$T/gfullr.err" &&
  same "ZeRO-1's GPU checkpoint resumed on one GPU vs the uninterrupted run" "$T/gfullr" "$T/gfull1" ||
  bad "resuming ZeRO-1's GPU checkpoint on one GPU: $(grep -v 'train: step' "$T/gfullr.err" | tail -3)"
# and on two again: each rank takes its chunk of the moments from the file straight to its device
rm -rf "$T/gfullr2" && cp -r "$T/gfull2" "$T/gfullr2" && rm -rf "$T/gfullr2/model"
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GFULL[@]}" --gpus 2 --out "$T/gfullr2" --resume 2>"$T/gfullr2.err"
grep -q "resuming after step" "$T/gfullr2.err" && same "ZeRO-1's GPU checkpoint resumed on 2 GPUs vs the uninterrupted run: exactly" "$T/gfullr2" "$T/gfull2" --tol 0 ||
  bad "resuming ZeRO-1's GPU checkpoint on 2 GPUs: $(grep -v 'train: step' "$T/gfullr2.err" | tail -3)"
# rank 0 slow to write its checkpoint (its file a FIFO no one reads for longer than --dist-timeout): rank 1 waits
# for it between the gathers without a deadline, so the run ends with rank 0's own error (a FIFO cannot be
# fsync'd), not with rank 1 timing out in the optimiser's gather
mkdir -p "$T/gslow/checkpoint" && mkfifo "$T/gslow/checkpoint/state-4.safetensors.tmp"
LLAMADUO_EMU_DEVICES=2 "$EMU" train "${GFULL[@]}" --gpus 2 --dist-timeout 3 --out "$T/gslow" 2>"$T/gslow.err" & p=$!
for _ in $(seq 600); do grep -q "step 4/" "$T/gslow.err" && break; sleep 0.05; done
sleep 5
cat "$T/gslow/checkpoint/state-4.safetensors.tmp" >/dev/null &
if ends_within $p 60; then wait $p; rc=$?; else rc=timeout; kill -9 $p; fi
[ "$rc" != 0 ] && [ "$rc" != timeout ] && grep -q "rank 0: .*state-4.safetensors: write failed" "$T/gslow.err" && ! grep -q "gathering the optimiser's state waited" "$T/gslow.err" &&
  ok "rank 0 slow to write a checkpoint: rank 1 waited past --dist-timeout, and the run ended with rank 0's error (exit $rc)" ||
  bad "rank 0 slow to write a checkpoint: exit $rc; $(grep -v 'train: step' "$T/gslow.err" | tail -3)"

finish
