#!/usr/bin/env python3
"""`llamaduo proxy` through the official `openai` client, with the fault server as the service LLM and the tiny
model (served by the proxy itself) as the student.

Forward mode returns the service's replies unchanged (chat and completions, streamed and not; a stream relayed as
it arrives); local answers with the student; canary's student share is within 3 points of the configured one over
2,000 requests; shadow records both answers and their agreement (the same by `capture stats` and by `llamaduo
judge` with judge.method metric); every forwarded pair is captured, scrubbed, exported deduplicated, and survives
a kill -9; the service failing (503s, timeouts, 429s, killed outright) is answered for by the student within the
configured timeout with no client error, the breaker opens and closes again once the service is back; routes
without failover return OpenAI-style errors; client keys are checked or forwarded, and no key is in any file.
--load: 64 concurrent clients for 60 s through a forwarding proxy: no error, memory flat.
Usage: test_proxy.py BUILD_DIR SOURCE_DIR [--load]
"""
import atexit
import glob
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pyharness import bad, check, finish, need_openai, ok, rss_kib, stop

openai = need_openai("test_proxy")

BIN = os.path.join(sys.argv[1], "llamaduo")
SRC = sys.argv[2]
TINY = os.path.join(SRC, "tests", "fixtures", "tiny", "llama.gguf")
T = tempfile.mkdtemp(prefix="llamaduo-proxy-")
SERVICE_KEY = "sk-llamaduo-FAKE-proxy-7c1e90"
CLIENT_KEY = "sk-llamaduo-client-55aa31"
os.environ["LD_FAKE_KEY"] = SERVICE_KEY
os.environ["LD_PROXY_KEY"] = CLIENT_KEY
CHILDREN = []  # every process started, killed at exit whatever happened


@atexit.register
def kill_children():
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()


class FaultServer:
    def __init__(self, port=0):
        self.port_file = os.path.join(T, f"fault-{time.time_ns()}.port")
        self.proc = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "fault_server.py"), "--port-file", self.port_file,
                                      "--port", str(port), "--log", os.path.join(T, "fault.log"), "--expect-key-env", "LD_FAKE_KEY"])
        CHILDREN.append(self.proc)
        for _ in range(200):
            if os.path.exists(self.port_file):
                break
            time.sleep(0.05)
        self.port = int(open(self.port_file).read())
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def kill(self):
        self.proc.kill()
        self.proc.wait()


class Proxy:
    def __init__(self, name, config):
        self.config = os.path.join(T, name + ".yaml")
        with open(self.config, "w") as f:
            f.write(config)
        self.log_path = os.path.join(T, name + ".log")
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen([BIN, "proxy", self.config], stdout=self.log, stderr=subprocess.STDOUT)
        CHILDREN.append(self.proc)
        for _ in range(600):
            m = re.search(r"proxy: on http://127\.0\.0\.1:(\d+)/v1", open(self.log_path).read())
            if m:
                self.port = int(m.group(1))
                self.base = f"http://127.0.0.1:{self.port}/v1"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("the proxy did not come up: " + open(self.log_path).read())

    def client(self, key=CLIENT_KEY, **kw):
        return openai.OpenAI(base_url=self.base, api_key=key, max_retries=0, **kw)

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", path)
        r = c.getresponse()
        out = r.status, r.getheader("Content-Type"), r.read().decode()
        c.close()
        return out

    def post_raw(self, path, data, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("POST", path, body=data, headers={"Authorization": f"Bearer {CLIENT_KEY}", **(headers or {})})
        r = c.getresponse()
        out = r.status, r.read().decode()
        c.close()
        return out

    def metrics(self):
        values = {}
        for line in self.get("/metrics")[2].splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def health(self):
        return json.loads(self.get("/health")[2])

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        return stop(self.proc)


def llamaduo(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def user(text):
    return [{"role": "user", "content": text}]


def answered_by(raw):
    return raw.headers.get("x-llamaduo-answered-by")


def chat(client, model, text, **kw):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=user(text), **kw)
    return raw, raw.parse()


def stream_pieces(client, model, text, **kw):
    """The streamed deltas, and when each arrived."""
    pieces, times = [], []
    for chunk in client.chat.completions.create(model=model, messages=user(text), stream=True, **kw):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            times.append(time.monotonic())
    return pieces, times


def config_a(service_url):
    return f"""proxy:
  port: 0
  api_key_env: LD_PROXY_KEY
  max_body: 65536
service:
  base_url: {service_url}
  api_key_env: LD_FAKE_KEY
  first_byte_timeout_s: 1
  max_attempts: 2
student:
  model: {TINY}
  parallel: 8
  log: {T}/student.log
routes:
  - model: svc-model
    mode: forward
  - model: shadow-model
    mode: shadow
  - model: canary-model
    mode: canary
    share: 0.25
  - model: local-model
    mode: local
  - model: "*"
    mode: forward
    failover: true
breaker:
  failures: 3
  window_s: 2
  cooldown_s: 1
capture:
  db: {T}/capture.sqlite
privacy:
  enabled: true
"""


def forward(px, fs):
    c, direct = px.client(), openai.OpenAI(base_url=fs.url, api_key=SERVICE_KEY, max_retries=0)
    raw, r = chat(c, "svc-model", "forward me, please")
    d = direct.chat.completions.create(model="svc-model", messages=user("forward me, please"))
    check(r.model_dump() == d.model_dump() and answered_by(raw) == "service",
          "forward: the service's chat reply unchanged, said to be the service's", f"{r} vs {d}")
    raw = c.completions.with_raw_response.create(model="svc-model", prompt="complete this")
    d = direct.completions.create(model="svc-model", prompt="complete this")
    check(raw.parse().model_dump() == d.model_dump(), "forward: a completion unchanged")
    got, _ = stream_pieces(c, "svc-model", "stream me")
    want = [ch.choices[0].delta.content for ch in direct.chat.completions.create(model="svc-model", messages=user("stream me"), stream=True)
            if ch.choices and ch.choices[0].delta.content]
    check(got == want and len(got) >= 3, "forward: a streamed reply, the same events", f"{got} vs {want}")
    got = [ch.choices[0].text for ch in c.completions.create(model="svc-model", prompt="stream a completion", stream=True)]
    want = [ch.choices[0].text for ch in direct.completions.create(model="svc-model", prompt="stream a completion", stream=True)]
    check(got == want, "forward: a streamed completion, the same events")
    pieces, times = stream_pieces(c, "svc-model", "slow stream FAULTS:slowstream")
    check(len(times) >= 3 and times[-1] - times[0] > 0.6, "forward: a stream is relayed as it arrives (its pieces 0.4 s apart)",
          f"{len(times)} pieces over {times[-1] - times[0] if times else 0:.2f} s")


def refusals(px):
    try:
        px.client(key="sk-wrong").chat.completions.create(model="svc-model", messages=user("x"))
        bad("auth: a wrong key refused")
    except openai.AuthenticationError as e:
        check(e.status_code == 401 and "API key" in str(e), "auth: a wrong key refused with 401")
    status, body = px.post_raw("/v1/chat/completions", b'{"model": "svc-model"}', {"Authorization": ""})
    check(status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", "auth: no key refused with 401")
    status, body = px.post_raw("/v1/chat/completions", b"{not json")
    check(status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error", "a body that is not JSON: 400, OpenAI-style")
    status, body = px.post_raw("/v1/chat/completions", b"{" + b'"x": "' + b"a" * 70000 + b'"}')
    check(status == 413 and "larger than 65536" in json.loads(body)["error"]["message"], "a body over proxy.max_body: 413")
    check(px.get("/v1/chat/completions")[0] == 405 and px.get("/nowhere")[0] == 404, "a wrong method 405, an unknown path 404")
    ids = sorted(m.id for m in px.client().models.list())  # the fault server has no list: the routes' names and the student's
    check(ids == ["canary-model", "local-model", "shadow-model", "student", "svc-model"], f"/v1/models: {ids}")


def local_and_canary(px):
    c = px.client()
    raw, r = chat(c, "local-model", "answer locally", max_tokens=4)
    check(answered_by(raw) == "student" and r.model == "student" and r.choices[0].message.content is not None,
          "local: the student answers", str(r))
    before = px.metrics()

    def one(i):
        raw, _ = chat(c, "canary-model", f"canary request {i}", max_tokens=1)
        return answered_by(raw)

    with ThreadPoolExecutor(16) as pool:
        by = list(pool.map(one, range(2000)))
    share = by.count("student") / len(by)
    check(abs(share - 0.25) <= 0.03 and by.count("service") + by.count("student") == 2000,
          f"canary: the student answered {share:.3f} of 2,000 requests (configured 0.25, within 0.03)")
    key = 'llamaduo_proxy_requests_total{route="canary-model",mode="canary",answered_by="student",code="2xx"}'
    counted = px.metrics().get(key, 0) - before.get(key, 0)
    check(counted == by.count("student"), f"/metrics counts the canary's student answers ({counted:.0f})")


def shadow(px):
    c = px.client()
    for i in range(20):
        raw, r = chat(c, "shadow-model", f"shadow question {i}")
        if answered_by(raw) != "service":
            bad("shadow: the service answers the client")
            return
    ok("shadow: the service answers the client")
    for _ in range(300):
        if px.metrics().get("llamaduo_proxy_shadow_answered_total", 0) >= 20:
            break
        time.sleep(0.1)
    stats = llamaduo("capture", "stats", "--db", f"{T}/capture.sqlite")
    m = re.search(r"shadow pairs: (\d+); .*exact match ([\d.]+), normalized exact match ([\d.]+), ROUGE-L ([\d.]+), chrF ([\d.]+)",
                  stats.stdout)
    check(m and int(m.group(1)) == 20, "shadow: both answers recorded for each of 20 requests", stats.stdout + stats.stderr)
    out = llamaduo("capture", "shadow", "--db", f"{T}/capture.sqlite", "--out", f"{T}/shadow")
    tests = [json.loads(l) for l in open(f"{T}/shadow/test.jsonl")]
    answers = [json.loads(l) for l in open(f"{T}/shadow/answers.jsonl")]
    check(out.returncode == 0 and len(tests) == len(answers) == 20 and [t["id"] for t in tests] == [a["id"] for a in answers] and
          all(t["messages"][-1]["role"] == "assistant" for t in tests), "capture shadow: test and answers files, pair by pair")
    exact = sum(a["text"].strip() == t["messages"][-1]["content"].strip() for a, t in zip(answers, tests)) / 20
    with open(f"{T}/judge.yaml", "w") as f:
        f.write("service:\n  provider: openai\n  base_url: http://127.0.0.1:9/v1\n  model: m\n"
                "task:\n  description: answer as the service does\njudge:\n  method: metric\n  pass: rouge_l >= 0.9\n"
                "privacy:\n  enabled: false\n")
    j = llamaduo("judge", "--config", f"{T}/judge.yaml", "--test", f"{T}/shadow/test.jsonl", "--answers", f"{T}/shadow/answers.jsonl",
                 "--out-dir", f"{T}/shadow/judge")
    metrics = json.load(open(f"{T}/shadow/judge/metrics.json")) if j.returncode == 0 else {}
    check(m and metrics and abs(metrics["exact_match"] - exact) < 1e-9 and abs(float(m.group(2)) - exact) < 1e-3 and
          abs(metrics["rouge_l"] - float(m.group(4))) < 1e-3 and abs(metrics["chrf"] - float(m.group(5))) < 1e-3,
          "shadow: the agreement, the same from capture stats and from llamaduo judge (judge.method metric)", j.stderr[-400:])


def capture(px):
    c = px.client()
    for _ in range(2):  # one conversation twice: exported once
        chat(c, "svc-model", "the same question twice")
    chat(c, "svc-model", "mail me at jane.doe@example.org, my token is sk-proj-abcdefghijklmnopqrstuvwx0123")
    out = llamaduo("capture", "export", "--db", f"{T}/capture.sqlite", "--out", f"{T}/coverage.jsonl")
    records = [json.loads(l) for l in open(f"{T}/coverage.jsonl")] if out.returncode == 0 else []
    convs = [json.dumps(r["messages"][:-1]) for r in records]
    check(out.returncode == 0 and len(convs) == len(set(convs)) and "duplicates left out" in out.stdout and
          sum("the same question twice" in cv for cv in convs) == 1, "capture export: chat records, deduplicated", out.stdout + out.stderr)
    check(all(r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"] for r in records),
          "capture export: each record ends with the service's answer")
    text = [r for r in records if "mail me at" in json.dumps(r)]
    check(len(text) == 1 and "<EMAIL_1>" in json.dumps(text[0]) and "jane.doe" not in json.dumps(text[0]) and
          "sk-proj-abcdef" not in json.dumps(text[0]), "capture: an email and a key scrubbed before they were stored")
    blob = b"".join(open(p, "rb").read() for p in glob.glob(f"{T}/capture.sqlite*"))
    check(b"jane.doe@example.org" not in blob and b"sk-proj-abcdefghij" not in blob, "capture: the store's files hold neither")
    run = llamaduo("capture", "export", "--db", f"{T}/nowhere.sqlite", "--out", f"{T}/x.jsonl")
    check(run.returncode == 1 and "no capture store" in run.stderr, "capture export of a missing store: a clear error")
    run = llamaduo("capture", "export", "--db", f"{T}/capture.sqlite", "--out", f"{T}/x.jsonl", "--since", "yesterday")
    check(run.returncode == 1 and "--since yesterday" in run.stderr, "capture export --since nonsense: a clear error")
    run = llamaduo("capture", "export", "--db", f"{T}/capture.sqlite", "--out", f"{T}/x.jsonl", "--since", "1m")
    check(run.returncode == 0 and 0 < sum(1 for _ in open(f"{T}/x.jsonl")) <= len(records), "capture export --since 1m: the recent ones")


def settle(px, c):
    """Each fault below counts toward the breaker (3 failures within 2 s open it): past the window and the cooldown
    (1 s) a good request probes the service and closes it again, so the next check starts afresh."""
    time.sleep(2.1)
    chat(c, "any-model", f"settle {time.monotonic()}")
    if px.health()["breaker"] != "closed":
        bad("the breaker closes after its cooldown", str(px.health()))


def failover(px, fs):
    c = px.client()
    raw, _ = chat(c, "any-model", "FAULTS:503,503 answer anyway")
    check(answered_by(raw) == "student" and raw.headers.get("x-llamaduo-failover") == "true", "failover: two 503s, the student answers")
    settle(px, c)
    log_before = sum(1 for _ in open(os.path.join(T, "fault.log")))
    t0 = time.monotonic()
    pieces, _ = stream_pieces(c, "any-model", "FAULTS:slow,slow answer in time", max_tokens=4)
    took = time.monotonic() - t0
    sent = [json.loads(l)["fault"] for l in open(os.path.join(T, "fault.log"))][log_before:]
    check(pieces is not None and took < 2 and sent.count("slow") == 1,
          f"failover: a stream past first_byte_timeout_s (1 s): the student, in {took:.1f} s, and the request was not sent twice", str(sent))
    settle(px, c)
    log_before = sum(1 for _ in open(os.path.join(T, "fault.log")))
    raw, _ = chat(c, "any-model", "FAULTS:reset,reset cut me off", max_tokens=4)
    sent = [json.loads(l)["fault"] for l in open(os.path.join(T, "fault.log"))][log_before:]
    # (libcurl itself sends once more when a kept-alive connection dies before any byte of the answer: the
    # idle-close race; the proxy adds no attempt of its own after a request went out)
    check(answered_by(raw) == "student" and 1 <= len(sent) <= 2 and set(sent) == {"reset"},
          "failover: a connection reset after sending: the student answers, no retry of the proxy's own", str(sent))
    settle(px, c)
    before = px.metrics().get("llamaduo_proxy_retries_total", 0)
    raw, _ = chat(c, "any-model", "FAULTS:429 try again")
    check(answered_by(raw) == "service" and px.metrics()["llamaduo_proxy_retries_total"] > before, "a 429 is retried: the service answers")
    settle(px, c)
    try:
        c.chat.completions.create(model="svc-model", messages=user("FAULTS:429ra,429ra slow down"))
        bad("no failover: the service's 429 reaches the client with its Retry-After")
    except openai.RateLimitError as e:
        check(e.response.headers.get("retry-after") == "1", "no failover: the service's 429 (after a retry) reaches the client with its Retry-After")
    settle(px, c)
    try:
        c.chat.completions.create(model="svc-model", messages=user("FAULTS:503,503 no failover here"))
        bad("no failover: the service's 503 reaches the client")
    except openai.APIStatusError as e:
        check(e.status_code == 503 and "injected 503" in str(e), "no failover: the service's own 503 reaches the client")
    settle(px, c)
    port = fs.port
    fs.kill()
    slowest, answers = 0, []
    for i in range(10):
        t0 = time.monotonic()
        if i % 2:
            pieces, _ = stream_pieces(c, "any-model", f"service is gone {i}", max_tokens=4)
            answers.append("student" if pieces is not None else None)
        else:
            raw, _ = chat(c, "any-model", f"service is gone {i}", max_tokens=4)
            answers.append(answered_by(raw))
        slowest = max(slowest, time.monotonic() - t0)
    check(answers == ["student"] * 10 and slowest < 2, f"the service killed: 10 requests (5 streamed) answered by the student, none slower than {slowest:.2f} s")
    h = px.health()
    check(h["breaker"] == "open" and px.metrics()["llamaduo_proxy_breaker_state"] == 1, "the breaker is open", str(h))
    try:
        c.chat.completions.create(model="svc-model", messages=user("down, no failover"))
        bad("no failover, the service down: an OpenAI-style error")
    except openai.APIStatusError as e:
        check(e.status_code in (502, 503) and e.body and "message" in e.body, "no failover, the service down: a 502/503 OpenAI-style error")
    try:
        stream_pieces(c, "svc-model", "down, no failover, streamed")
        bad("no failover, the service down, streamed: an OpenAI-style error")
    except openai.APIStatusError as e:
        check(e.status_code in (502, 503), "no failover, the service down, streamed: a 502/503 OpenAI-style error")
    fs2 = FaultServer(port)
    time.sleep(1.2)  # breaker.cooldown_s
    raw, _ = chat(c, "any-model", "are you back")
    check(answered_by(raw) == "service" and px.health()["breaker"] == "closed", "the service back: the probe closes the breaker")
    m = px.metrics()
    check(m['llamaduo_proxy_failovers_total{route="*",mode="forward",reason="breaker"}'] >= 1 and
          m['llamaduo_proxy_failovers_total{route="*",mode="forward",reason="error"}'] >= 1 and
          m['llamaduo_proxy_failovers_total{route="*",mode="forward",reason="status"}'] >= 1 and
          m["llamaduo_proxy_breaker_opened_total"] >= 1, "/metrics counts failovers by reason and the breaker's openings",
          str({k: v for k, v in m.items() if "failover" in k or "breaker" in k}))
    status, ctype, _ = px.get("/metrics")
    check(status == 200 and ctype.startswith("text/plain"), "/metrics is Prometheus text")
    return fs2


def kill9_and_client_key(fs):
    px = Proxy("b", f"""proxy:
  port: 0
service:
  base_url: {fs.url}
  forward_client_key: true
routes:
  - model: gpt-x
capture:
  db: {T}/capture-b.sqlite
""")
    c = px.client(key=SERVICE_KEY)  # the client's own service key, forwarded
    n_before = sum(1 for _ in open(os.path.join(T, "fault.log")))
    for i in range(40):
        chat(c, "gpt-x", f"acknowledged {i}")
    for i in range(10):
        stream_pieces(c, "gpt-x", f"acknowledged stream {i}")
    px.proc.kill()  # kill -9 straight after the last answer
    px.proc.wait()
    out = llamaduo("capture", "export", "--db", f"{T}/capture-b.sqlite", "--out", f"{T}/coverage-b.jsonl")
    n = sum(1 for _ in open(f"{T}/coverage-b.jsonl")) if out.returncode == 0 else -1
    check(n == 50, f"capture: all 50 acknowledged pairs (10 streamed) survive a kill -9 ({n})", out.stderr)
    log = [json.loads(l) for l in open(os.path.join(T, "fault.log"))][n_before:]
    check(len(log) >= 50 and all(e["key_ok"] for e in log), "forward_client_key: the client's key reached the service")
    px = Proxy("b2", open(px.config).read().replace("capture:\n", "capture:\n  enabled: false\n").replace("capture-b", "capture-off"))
    try:
        px.client(key=SERVICE_KEY).chat.completions.create(model="other", messages=user("x"))
        bad("a model without a route: 404")
    except openai.NotFoundError as e:
        check("no route" in str(e), "a model without a route: 404, model_not_found")
    raw, _ = chat(px.client(key=SERVICE_KEY), "gpt-x", "not to be kept")
    check(answered_by(raw) == "service" and not glob.glob(f"{T}/capture-off*"), "capture.enabled false: answered, and nothing stored")
    px.stop()
    px = Proxy("b3", open(px.config).read().replace("  enabled: false\n", "  sample: 0.3\n").replace("capture-off", "capture-sampled"))
    c = px.client(key=SERVICE_KEY)  # one client, its connections pooled (a client each would pass the per-address limit)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: chat(c, "gpt-x", f"sampled {i}"), range(600)))
    out = llamaduo("capture", "stats", "--db", f"{T}/capture-sampled.sqlite")
    m = re.search(r"gpt-x  forward  service: (\d+)", out.stdout)
    kept = int(m.group(1)) / 600 if m else -1
    check(abs(kept - 0.3) <= 0.06, f"capture.sample 0.3: {kept:.3f} of 600 forwarded pairs kept", out.stdout + out.stderr)
    check(px.stop() == 0, "SIGTERM: the proxy exits 0")


def functional():
    fs = FaultServer()
    px = Proxy("a", config_a(fs.url))
    forward(px, fs)
    refusals(px)
    local_and_canary(px)
    shadow(px)
    capture(px)
    fs = failover(px, fs)
    kill9_and_client_key(fs)
    children = subprocess.run(["pgrep", "-P", str(px.proc.pid)], capture_output=True, text=True).stdout.split()
    check(px.stop() == 0 and all(not os.path.exists(f"/proc/{p}") for p in children), "SIGTERM: exit 0, the student's server stopped too")
    leaked = [p for p in glob.glob(f"{T}/**", recursive=True) if os.path.isfile(p) and
              any(k.encode() in open(p, "rb").read() for k in (SERVICE_KEY, CLIENT_KEY))]
    check(not leaked, "no key in any file or log", str(leaked))
    fs.kill()


def load():
    fs = FaultServer()
    px = Proxy("load", f"proxy:\n  port: 0\nservice:\n  base_url: {fs.url}\n  api_key_env: LD_FAKE_KEY\ncapture:\n  db: {T}/load.sqlite\n")
    stop, errors, counts, lock = time.monotonic() + 60, [], [0], threading.Lock()

    def client_loop(k):
        c = openai.OpenAI(base_url=px.base, api_key="x", max_retries=0)
        i = 0
        while time.monotonic() < stop:
            try:
                r = c.chat.completions.create(model="m", messages=user(f"load {k} {i}"))
                if not r.choices[0].message.content.startswith('{"echo"'):
                    errors.append("a wrong answer")
            except Exception as e:  # noqa: BLE001 (any failure counts)
                errors.append(repr(e))
            i += 1
            with lock:
                counts[0] += 1

    rss = []
    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(64)]
    for t in threads:
        t.start()
    while time.monotonic() < stop:
        time.sleep(5)
        rss.append(px.rss_kib())
    for t in threads:
        t.join()
    print(f"load: {counts[0]} requests by 64 clients in 60 s ({counts[0] / 60:.0f}/s), proxy RSS {rss[1] // 1024} -> {rss[-1] // 1024} MiB",
          flush=True)
    check(not errors, f"load: 64 clients for 60 s, no error ({len(errors)}: {errors[:3]})")
    check(rss[-1] - rss[1] < 16 * 1024, f"load: memory flat after warm-up ({rss[1] // 1024} -> {rss[-1] // 1024} MiB)")
    check(px.stop() == 0, "SIGTERM after the load: exit 0")
    fs.kill()


if __name__ == "__main__":
    try:
        load() if "--load" in sys.argv else functional()
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(T, ignore_errors=True)
    finish()
