#!/usr/bin/env bash
# The CLI as a user meets it: help, exit codes, one-line errors, JSONL in/out, determinism.
# Usage: test_cli.sh BUILD_DIR FIXTURES_DIR
set -u
BIN="$1/llamaduo"; FX="$2"; TINY="$FX/tiny/llama"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; }
expect_rc() {  # expect_rc NAME WANT_RC CMD...
  local name="$1" want="$2"; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" = "$want" ]; then ok "$name (rc $rc)"; else bad "$name: rc $rc, wanted $want; stderr: $(head -3 "$T/err")"; fi
}

expect_rc "no arguments shows usage" 2 "$BIN"
expect_rc "help" 0 "$BIN" help
for c in generate chat tokenize perplexity info; do expect_rc "$c --help" 0 "$BIN" "$c" --help; done
expect_rc "unknown command" 2 "$BIN" frobnicate
expect_rc "unknown flag" 2 "$BIN" generate --bogus
expect_rc "bad number" 2 "$BIN" generate --model "$TINY" --prompt x --temperature hot
expect_rc "missing model file" 1 "$BIN" generate --model "$T/nope.gguf" --prompt hi
if [ "$(wc -l <"$T/err")" = 1 ] && grep -q "nope.gguf" "$T/err"; then ok "missing model: one line naming the file"; else bad "missing model message: $(cat "$T/err")"; fi
expect_rc "garbage model file" 1 sh -c "head -c 5000 /dev/urandom > '$T/junk.gguf'; '$BIN' generate --model '$T/junk.gguf' --prompt hi"

# tokenize: encode then decode round trip, JSONL in and out
printf '{"text": "hello world, 2024-01-02"}\n{"text": "the quick brown fox"}\n' >"$T/texts.jsonl"
expect_rc "tokenize" 0 "$BIN" tokenize --model "$TINY" --input "$T/texts.jsonl"
cp "$T/out" "$T/ids.jsonl"
expect_rc "tokenize --decode" 0 "$BIN" tokenize --tokenizer "$TINY/tokenizer.json" --decode --input "$T/ids.jsonl"
if grep -q '"hello world, 2024-01-02"' "$T/out" && grep -q '"the quick brown fox"' "$T/out"; then ok "tokenize round trip"; else bad "round trip: $(cat "$T/out")"; fi
printf '{"text": "ok"}\n{"txt": 3}\n' >"$T/badtexts.jsonl"
expect_rc "tokenize bad line" 1 "$BIN" tokenize --model "$TINY" --input "$T/badtexts.jsonl"
grep -q "badtexts.jsonl:2" "$T/err" && ok "bad line named with file:line" || bad "bad line message: $(cat "$T/err")"

# generate: JSONL batch, samples, determinism, bad input named by line
printf '{"id": 1, "prompt": "hello"}\n{"id": "b", "messages": [{"role": "user", "content": "the quick"}, {"role": "assistant", "content": "ref"}]}\n{"id": 3, "prompt": "a much longer prompt about dates 2024-01-02 and foxes"}\n' >"$T/in.jsonl"
expect_rc "generate batch" 0 "$BIN" generate --model "$TINY" --input "$T/in.jsonl" --max-tokens 12 --temperature 0.8 --seed 7 --samples 2 --output "$T/a.jsonl"
[ "$(wc -l <"$T/a.jsonl")" = 6 ] && ok "6 answers for 3 prompts x 2 samples" || bad "answer count: $(wc -l <"$T/a.jsonl")"
# prompts and generated tokens have a rate each (the prompts dominate here: one rate over all would mislead)
grep -Eq "6 answer\(s\) in [0-9.]+s: [0-9]+ prompt tokens \([0-9.]+ tok/s\), [0-9]+ generated tokens \([0-9.]+ tok/s\)" "$T/err" &&
  ok "generate reports prompt and generated tokens/s apart" || bad "generate's rates: $(tail -1 "$T/err")"
"$BIN" generate --model "$TINY" --input "$T/in.jsonl" --max-tokens 12 --temperature 0.8 --seed 7 --samples 2 --batch 1 --output "$T/b.jsonl" 2>/dev/null
cmp -s "$T/a.jsonl" "$T/b.jsonl" && ok "same seed, different batch size: identical answers" || bad "answers depend on batching"
printf '{"id": 1, "prompt": "hello"}\nnot json\n' >"$T/bad.jsonl"
expect_rc "generate bad JSONL" 1 "$BIN" generate --model "$TINY" --input "$T/bad.jsonl"
grep -q "bad.jsonl:2" "$T/err" && ok "bad JSONL named with file:line" || bad "bad JSONL message: $(cat "$T/err")"
expect_rc "context overflow" 1 "$BIN" generate --model "$TINY" --prompt hello --max-tokens 100000
grep -q "exceeds the model's context" "$T/err" && ok "context overflow explained" || bad "overflow message: $(cat "$T/err")"

# a PEFT adapter on top of the model, without merging
expect_rc "generate --adapter" 0 "$BIN" generate --model "$TINY" --adapter "$FX/train/llama_peft_adapter" --raw --prompt hello --max-tokens 4
expect_rc "missing adapter" 1 "$BIN" generate --model "$TINY" --adapter "$T/no-adapter" --raw --prompt hello
grep -q "adapter_config.json" "$T/err" && ok "missing adapter named" || bad "adapter message: $(cat "$T/err")"

# train: LoRA on the tiny model; the validation loss falls, runs repeat exactly, bad data is named
DATES="$(dirname "$FX")/../configs/data"
expect_rc "train" 0 "$BIN" train --model "$TINY" --train "$DATES/dates.train.jsonl" --val "$DATES/dates.val.jsonl" --out "$T/tr1" --epochs 2 --lr 1e-2 --tokens-per-step 256
[ -f "$T/tr1/adapter/adapter_config.json" ] && [ -f "$T/tr1/adapter/adapter_model.safetensors" ] && ok "train wrote a PEFT adapter" || bad "no adapter written"
python3 - "$T/tr1/metrics.jsonl" <<'PY' && ok "validation loss falls" || bad "validation loss did not fall"
import json, sys
v = [json.loads(l)["val_loss"] for l in open(sys.argv[1]) if "val_loss" in l]
assert len(v) >= 2 and v[-1] < v[0] * 0.9, v
PY
"$BIN" train --model "$TINY" --train "$DATES/dates.train.jsonl" --val "$DATES/dates.val.jsonl" --out "$T/tr2" --epochs 2 --lr 1e-2 --tokens-per-step 256 2>/dev/null
cmp -s "$T/tr1/adapter/adapter_model.safetensors" "$T/tr2/adapter/adapter_model.safetensors" && ok "training is deterministic" || bad "two identical runs differ"
# activation checkpointing runs each block again going back: the same adapter byte for byte
"$BIN" train --model "$TINY" --train "$DATES/dates.train.jsonl" --val "$DATES/dates.val.jsonl" --out "$T/tr3" --epochs 2 --lr 1e-2 --tokens-per-step 256 --activation-checkpointing 2>/dev/null
cmp -s "$T/tr1/adapter/adapter_model.safetensors" "$T/tr3/adapter/adapter_model.safetensors" && ok "--activation-checkpointing trains the same adapter byte for byte" ||
  bad "--activation-checkpointing changed the adapter"
expect_rc "generate with the trained adapter" 0 "$BIN" generate --model "$TINY" --adapter "$T/tr1/adapter" --prompt "Convert this date to ISO 8601 (YYYY-MM-DD): 3 May 2024" --max-tokens 8
# kill -9 in the middle of training, then --resume: the same losses and the same adapter as an uninterrupted run
TR_ARGS=(--model "$TINY" --train "$DATES/dates.train.jsonl" --val "$DATES/dates.val.jsonl" --epochs 2 --lr 1e-2 --tokens-per-step 160 --save-every 25 --eval-every 100)
"$BIN" train "${TR_ARGS[@]}" --out "$T/full" 2>/dev/null
"$BIN" train "${TR_ARGS[@]}" --out "$T/killed" 2>/dev/null &
pid=$!
for _ in $(seq 1200); do [ -d "$T/killed/checkpoint" ] && break; sleep 0.05; done  # mid-run, past a checkpoint
sleep 0.3
kill -9 $pid 2>/dev/null
wait $pid
killed_rc=$?
"$BIN" train "${TR_ARGS[@]}" --out "$T/killed" --resume 2>"$T/err"
resume_rc=$?
curve() { python3 -c "import json,sys; [print({k: d.get(k) for k in ('step','loss','lr','grad_norm','val_loss')}) for d in map(json.loads, open(sys.argv[1]))]" "$1"; }
if [ $killed_rc = 137 ] && [ $resume_rc = 0 ] && grep -q "resuming after step" "$T/err" &&
   cmp -s <(curve "$T/full/metrics.jsonl") <(curve "$T/killed/metrics.jsonl") &&
   cmp -s "$T/full/adapter/adapter_model.safetensors" "$T/killed/adapter/adapter_model.safetensors"; then
  ok "resume after kill -9 reproduces the uninterrupted losses and adapter"
else
  bad "resume: killed rc $killed_rc, resume rc $resume_rc, $(diff <(curve "$T/full/metrics.jsonl") <(curve "$T/killed/metrics.jsonl") | head -3)"
fi
# a checkpoint in the layout of earlier builds (state.safetensors and {"step"} alone) still resumes, and is replaced
cp -r "$T/full" "$T/oldck"  # the same run's checkpoint, in today's layout
n=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$T/oldck/checkpoint/state.json")
mv "$T/oldck/checkpoint/state-$n.safetensors" "$T/oldck/checkpoint/state.safetensors" && echo "{\"step\": $n}" >"$T/oldck/checkpoint/state.json"
rm -rf "$T/oldck/adapter"
"$BIN" train "${TR_ARGS[@]}" --out "$T/oldck" --resume --save-every 2 2>"$T/err"
if [ $? = 0 ] && cmp -s "$T/full/adapter/adapter_model.safetensors" "$T/oldck/adapter/adapter_model.safetensors" &&
   [ "$(ls "$T/oldck/checkpoint")" = "$(printf 'state-%s.safetensors\nstate.json' "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$T/oldck/checkpoint/state.json")")" ]; then
  ok "a checkpoint of the earlier layout resumes to the same adapter, and only the newest state is kept"
else
  bad "old-layout resume: $(tail -2 "$T/err"); $(ls "$T/oldck/checkpoint" | tr '\n' ' ')"
fi
"$BIN" train "${TR_ARGS[@]}" --out "$T/nockpt" --resume >"$T/out" 2>"$T/err"
[ $? != 0 ] && grep -q "no usable checkpoint" "$T/err" && ok "--resume without a checkpoint is a clear error" || bad "resume without checkpoint: $(cat "$T/err")"

bad_data() {  # bad_data NAME EXPECTED CONTENT
  printf '%b' "$3" >"$T/bad-train.jsonl"
  "$BIN" train --model "$TINY" --train "$T/bad-train.jsonl" --out "$T/trbad" --epochs 1 >"$T/out" 2>"$T/err"
  if [ $? != 0 ] && grep -q "$2" "$T/err"; then ok "train refuses $1"; else bad "train $1: $(cat "$T/err")"; fi
}
good='{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
bad_data "a malformed line" "bad-train.jsonl:2: not a JSON object" "$good{oops\n"
bad_data "an unknown role" "bad-train.jsonl:1: message 1: unknown role robot" '{"messages": [{"role": "robot", "content": "q"}]}\n'
bad_data "empty content" "bad-train.jsonl:2: message 2: empty content" "$good"'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}\n'
bad_data "an empty dataset" "bad-train.jsonl: no records" "\n"
"$BIN" train --model "$TINY" --train "$DATES/dates.val.jsonl" --out "$T/trlong" --epochs 1 --max-len 12 --long-records error >"$T/out" 2>"$T/err"
[ $? != 0 ] && grep -q "more than max_len 12" "$T/err" && ok "a record over --max-len is an error when asked" || bad "long record error: $(cat "$T/err")"
"$BIN" train --model "$TINY" --train "$DATES/dates.val.jsonl" --out "$T/trlong" --epochs 1 --max-len 12 >"$T/out" 2>"$T/err"
[ $? != 0 ] && grep -q "no usable records (40 longer than max_len 12 were skipped)" "$T/err" && ok "skipped records are counted, never silent" || bad "skip report: $(cat "$T/err")"

# full fine-tuning: every weight trains (GGUF base -> DIR/model.gguf carrying the base's metadata), resumes
# exactly, and the result exports to Q8_0 and runs
FT_ARGS=(--model "$FX/tiny/llama.gguf" --method full --train "$DATES/dates.train.jsonl" --epochs 2 --lr 1e-3 --schedule constant --warmup 0 --tokens-per-step 256 --save-every 3)
expect_rc "train --method full" 0 "$BIN" train "${FT_ARGS[@]}" --val "$DATES/dates.val.jsonl" --out "$T/ft"
grep -q "full fine-tuning of" "$T/err" && [ -f "$T/ft/model.gguf" ] && ok "full fine-tuning wrote model.gguf" || bad "full fine-tuning: $(tail -3 "$T/err")"
python3 - "$T/ft/metrics.jsonl" <<'PY' && ok "full fine-tuning lowers the validation loss" || bad "full fine-tuning did not learn"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
vals = [r["val_loss"] for r in rows if "val_loss" in r]
sys.exit(0 if vals[-1] < 0.8 * vals[0] else 1)
PY
"$BIN" train "${FT_ARGS[@]}" --out "$T/ft-resumed" --epochs 1 2>/dev/null  # stops early (constant lr: the same first steps), checkpoint at 3
"$BIN" train "${FT_ARGS[@]}" --out "$T/ft-whole" 2>/dev/null
"$BIN" train "${FT_ARGS[@]}" --out "$T/ft-resumed" --resume 2>/dev/null
cmp -s "$T/ft-whole/model.gguf" "$T/ft-resumed/model.gguf" && ok "full fine-tuning resumes to the same weights" || bad "resumed full fine-tuning differs"
expect_rc "export a fully fine-tuned model to Q8_0" 0 "$BIN" export --model "$T/ft/model.gguf" --type q8_0 --out "$T/ft-q8.gguf"
expect_rc "generate from the Q8_0 export" 0 "$BIN" generate --model "$T/ft-q8.gguf" --raw --prompt hello --max-tokens 4
expect_rc "export LoRA to GGUF" 0 "$BIN" export --model "$FX/tiny/llama.gguf" --adapter "$T/tr1/adapter" --out "$T/lora-f16.gguf"
grep -q "14 merged with the adapter" "$T/err" && ok "export merges every adapted linear" || bad "export: $(cat "$T/err")"
"$BIN" export --model "$TINY" --adapter "$T/tr1/adapter" --format gguf --out "$T/no.gguf" >"$T/out" 2>"$T/err"
[ $? != 0 ] && grep -q "needs a GGUF base" "$T/err" && ok "export refuses GGUF from an HF base, saying why" || bad "export hf->gguf: $(cat "$T/err")"

# perplexity
for i in $(seq 40); do echo "the quick brown fox jumps over the lazy dog $i"; done >"$T/text.txt"
expect_rc "perplexity" 0 "$BIN" perplexity --model "$TINY" --file "$T/text.txt" --ctx 64
grep -q '"ppl"' "$T/out" && ok "perplexity prints ppl" || bad "perplexity output: $(cat "$T/out")"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
