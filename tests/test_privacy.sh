#!/usr/bin/env bash
# Nothing private leaves (host/privacy.c in the client): a run whose seeds carry 200 planted PII strings of 8 kinds
# (25 each: emails, phone numbers, IP addresses, IBANs, card numbers, URLs with credentials, API keys, names from
# privacy.terms), against the fault server logging every request body. No body holds any of the 200; neither the
# response cache nor the ledger does; the synthetic data keeps placeholders (or, with privacy.surrogates, stand-ins),
# never the originals; the service's answers that reuse a placeholder are mapped back; the report counts the finds by
# kind; `llamaduo scrub` finds all 200 in the seeds and none in the shipped task data.
# Usage: test_privacy.sh BUILD_DIR SOURCE_DIR
source "$2/tests/harness.sh"
export LD_FAKE_KEY="sk-llamaduo-FAKE-5e2c77d0"

fault_server service --log-bodies

python3 - "$T" <<'PY'
import json, random, string, sys
T = sys.argv[1]
rng = random.Random(7)
def luhn_complete(prefix, length):
    digits = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(length - len(prefix) - 1)]
    for check in range(10):
        ds = digits + [check]
        s = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(ds)))
        if s % 10 == 0:
            return "".join(map(str, ds))
def iban(country="DE"):
    bban = "".join(rng.choice(string.digits) for _ in range(18))
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - num % 97:02d}{bban}"
first = ["Priya", "Tomasz", "Ingrid", "Kwame", "Lucia", "Hiroshi", "Amara", "Dmitri", "Sofia", "Rafael", "Noor", "Elif", "Mateo"]
last = ["Okonkwo", "Lindqvist", "Varga", "Nakamura", "Castellanos", "Haddad", "Sorensen", "Mbeki", "Ferreira", "Kowalczyk"]
names = sorted({f"{rng.choice(first)} {rng.choice(last)}" for _ in range(200)})[:25]
pii = {  # short enough that a record fits the tiny model's 128-token context
    "email": [f"{rng.choice(first).lower()}{i}@c{i}.example.net" for i in range(25)],
    "phone": [f"+1 {rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}" for i in range(25)],
    "ip": [f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for i in range(25)],
    "iban": [iban() for i in range(25)],
    "card": [luhn_complete("4", 16) for i in range(25)],
    "url": [f"https://u{i}:p{rng.randint(1000, 9999)}@h{i}.example.org" for i in range(25)],
    "api_key": ["sk-proj-" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(18)) for i in range(25)],
    "term": names,
}
assert all(len(v) == 25 and len(set(v)) == 25 for v in pii.values()), {k: len(set(v)) for k, v in pii.items()}
kinds = list(pii)
with open(f"{T}/coverage.jsonl", "w") as f:
    for i in range(50):  # four strings a record, two in the prompt and two in the reference: 25 of each kind
        slot = [pii[kinds[j % 8]][j // 8] for j in range(4 * i, 4 * i + 4)]
        f.write(json.dumps({"id": f"rec-{i:02d}", "messages": [
            {"role": "user", "content": f"{slot[0]} {slot[1]}?"},
            {"role": "assistant", "content": f"{slot[2]} {slot[3]}"}]}) + "\n")
json.dump(pii, open(f"{T}/pii.json", "w"))
with open(f"{T}/terms.yaml", "w") as f:
    f.write("  terms:\n" + "".join(f"    - {n}\n" for n in names))
PY
config() {  # config FILE DIR [privacy lines]
  cat >"$1" <<YAML
run:
  dir: $2
  coverage: $T/coverage.jsonl
  test_ratio: 0.2
  max_rounds: 2
  patience: 5
  samples: 1
  probe: 4
student:
  model: $SRC/tests/fixtures/tiny/llama.gguf
  threads: 1
  train: {epochs: 1, lr: 0.01, tokens_per_step: 512, max_len: 512, dropout: 0}
  infer: {max_tokens: 12, temperature: 0.8, seed: 3, batch: 8}
service:
  provider: openai
  base_url: http://127.0.0.1:$PORT/v1
  model: teacher-1
  api_key_env: LD_FAKE_KEY
  price_in_per_mtok: 1
  price_out_per_mtok: 2
  concurrency: 4
task:
  description: Summarise the support ticket.
synth:
  calls: 8
  pairs_per_call: 2
judge:
  judgments_per_answer: 1
privacy:
$(cat "$T/terms.yaml")
$3
YAML
}
config "$T/run.yaml" "$T/run" ""
"$BIN" run "$T/run.yaml" >"$T/run.out" 2>&1 && ok "a two-round run with privacy on by default (a remote service)" || bad "run: $(tail -5 "$T/run.out")"

python3 - "$T" <<'PY' && ok "0 of 200 planted PII strings in any request body; none in the cache, the ledger or the synthetic data" || bad "PII left the machine"
import json, sqlite3, sys
T = sys.argv[1]
pii = [s for v in json.load(open(f"{T}/pii.json")).values() for s in v]
bodies = [l for l in open(f"{T}/service.log")]
assert len(bodies) > 20, len(bodies)
found = sorted({p for p in pii for b in bodies if p in b})
print(f"{len(pii)} planted, {len(bodies)} requests logged, {len(found)} found in them")
assert not found, found[:5]
for db in ("cache.sqlite", "ledger.sqlite"):
    raw = open(f"{T}/run/{db}", "rb").read().decode("utf-8", "replace")
    dump = "\n".join(sqlite3.connect(f"{T}/run/{db}").iterdump())
    hits = [p for p in pii if p in raw or p in dump]
    assert not hits, (db, hits[:3])
synth = open(f"{T}/run/data/round-02.synth.jsonl").read()
assert not [p for p in pii if p in synth], "an original in the synthetic data"
assert "<EMAIL_1>" in synth and "<TERM_1>" in synth, "the synthetic data keeps the placeholders"
PY

# the same run through Anthropic's Message Batches (service.batch): the batches' request bodies (logged at their
# creation) hold none of the 200 either
from=$(wc -l <"$T/service.log")
config "$T/batch.yaml" "$T/batch" ""
sed -i "s#  provider: openai#  provider: anthropic#; s#  base_url: http://127.0.0.1:$PORT/v1#  base_url: http://127.0.0.1:$PORT#" "$T/batch.yaml"
sed -i 's/  concurrency: 4/  concurrency: 4\n  batch: true\n  batch_poll_s: 0.05/' "$T/batch.yaml"
"$BIN" run "$T/batch.yaml" >"$T/batch.out" 2>&1 && ok "the run with service.batch on the Anthropic wire" || bad "batch run: $(tail -5 "$T/batch.out")"
python3 - "$T" "$from" <<'PY' && ok "service.batch (Anthropic): 0 of 200 planted PII strings in any batch's request bodies, the cache or the ledger" ||
import json, sqlite3, sys
T = sys.argv[1]
pii = [s for v in json.load(open(f"{T}/pii.json")).values() for s in v]
log = [json.loads(l) for l in open(f"{T}/service.log").readlines()[int(sys.argv[2]):]]
creates = [e for e in log if e.get("batch_api") == "create"]
bodies = [json.dumps(b) for e in creates for b in e["bodies"]]
assert len(creates) >= 3 and len(bodies) == sum(e["requests"] for e in creates) > 20, (len(creates), len(bodies))
assert not [e for e in log if "batch_api" not in e], "a request sent one at a time"
found = sorted({p for p in pii for b in bodies if p in b})
print(f"{len(pii)} planted, {len(bodies)} batched requests logged in {len(creates)} batches, {len(found)} found in them")
assert not found, found[:5]
for db in ("cache.sqlite", "ledger.sqlite"):
    dump = "\n".join(sqlite3.connect(f"{T}/batch/{db}").iterdump())
    assert not [p for p in pii if p in dump], db
assert not [p for p in pii if p in open(f"{T}/batch/data/round-02.synth.jsonl").read()]
PY
  bad "PII left the machine in a batch"

python3 - "$T" <<'PY' && ok "the service's answers that reuse placeholders are mapped back; the report counts the finds by kind" || bad "mapping back / report"
import json, sys
T = sys.argv[1]
pii = json.load(open(f"{T}/pii.json"))
test = [json.loads(l) for l in open(f"{T}/run/data/coverage.test.jsonl")]
ans = {a["id"]: a["text"] for a in map(json.loads, open(f"{T}/run/data/ceiling.answers.jsonl"))}
for r in test:
    prompt = r["messages"][0]["content"]
    got = json.loads(ans[r["id"]])["placeholders"]
    assert got and all(g in prompt for g in got), (got, prompt)  # the originals, back in the answer
    assert "<" not in "".join(got), got
h = open(f"{T}/run/report.html").read()
assert "Privacy" in h and "Replaced with placeholders before sending" in h, "report"
d = json.loads(__import__("sqlite3").connect(f"{T}/run/ledger.sqlite").execute(
    "select detail from stages where stage = 'synth'").fetchone()[0])
assert set(d["scrubbed"]) == {"email", "phone", "ip", "iban", "card", "url", "api_key", "term"}, d["scrubbed"]
PY

# surrogates: the synthetic pairs get realistic stand-ins, never placeholders or originals
config "$T/sur-run.yaml" "$T/sur" "  surrogates: true"
python3 - "$T/sur-run.yaml" "$T/sur.yaml" <<'PY'  # the stage sections alone, for llamaduo synth
import re, sys
text = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(text[text.index("service:"):])
PY
mkdir -p "$T/sur-out"
head -40 "$T/coverage.jsonl" >"$T/seeds.jsonl"; tail -10 "$T/coverage.jsonl" >"$T/test.jsonl"
"$BIN" synth --config "$T/sur.yaml" --train "$T/seeds.jsonl" --test "$T/test.jsonl" --out-dir "$T/sur-out" --round 2 >"$T/sur.out" 2>&1 &&
python3 - "$T" <<'PY' && ok "privacy.surrogates: stand-ins of the same kind in the synthetic pairs" || bad "surrogates: $(tail -3 "$T/sur.out")"
import glob, json, re, sys
T = sys.argv[1]
pii = [s for v in json.load(open(f"{T}/pii.json")).values() for s in v]
text = "".join(open(p).read() for p in glob.glob(f"{T}/sur-out/*.synth.jsonl"))
assert text and not re.search(r"<[A-Z]+_\d+>", text), "a placeholder left"
assert "@example.com" in text and "192.0.2." in text and "+1 555-01" in text, text[:400]
assert not [p for p in pii if p in text]
PY

"$BIN" scrub "$T/coverage.jsonl" --config "$T/run.yaml" >"$T/scrub.out" 2>&1 &&
  grep -q "50 records, 50 with finds, 200 finds (25 email, 25 phone, 25 ip, 25 iban, 25 card, 25 url, 25 api_key, 25 term)" "$T/scrub.out" &&
  ok "llamaduo scrub finds all 200, 25 of each kind" || bad "scrub: $(tail -2 "$T/scrub.out")"
n=0
for f in "$SRC"/configs/data/*.jsonl; do "$BIN" scrub "$f" | tail -1 | grep -q " 0 finds$" || { n=$((n+1)); "$BIN" scrub "$f" | tail -4; }; done
[ "$n" = 0 ] && ok "no false positive in the shipped task data" || bad "$n shipped data files with finds"

# the same requests with privacy.enabled: false carry the originals: the check above can fail
: >"$T/service.log"
config "$T/off.yaml" "$T/off" "  enabled: false"
sed -i 's/max_rounds: 2/max_rounds: 1/' "$T/off.yaml"
"$BIN" run "$T/off.yaml" >"$T/off.out" 2>&1
python3 - "$T" <<'PY' && ok "with privacy.enabled false the originals are in the request bodies (the check can fail)" || bad "privacy off"
import json, sys
T = sys.argv[1]
pii = [s for v in json.load(open(f"{T}/pii.json")).values() for s in v]
log = open(f"{T}/service.log").read()
n = sum(p in log for p in pii)
print(f"privacy off: {n} of {len(pii)} in the request bodies")
assert n >= 40, n
PY

# an unknown privacy key or a bad value is refused at --check
sed 's/^privacy:$/privacy:\n  enabled: maybe/' "$T/run.yaml" >"$T/bad.yaml"
"$BIN" run "$T/bad.yaml" --check 2>&1 | grep -q "'privacy.enabled' must be true or false" && ok "a bad privacy.enabled is refused" || bad "privacy.enabled"
sed 's/^privacy:$/privacy:\n  kinds: [email, passport]/' "$T/run.yaml" >"$T/bad.yaml"
"$BIN" run "$T/bad.yaml" --check 2>&1 | grep -q "'privacy.kinds' names 'passport'" && ok "an unknown kind is refused" || bad "privacy.kinds"

finish
