#!/usr/bin/env python3
"""A local stand-in for the service LLMs, for tests: speaks OpenAI Chat Completions, Anthropic Messages and
Gemini generateContent on 127.0.0.1 and injects faults on request.

The last user message picks the faults: "FAULTS:429,503" makes the first attempt of that exact request get a
429, the second a 503, and the third succeed. Faults: 429, 429ra (429 with Retry-After: 1), 500, 503, 400,
slow (answers after --slow seconds), reset (drops the connection), trunc (truncated JSON), invalid (not JSON),
nojson (a reply without a JSON object); and, for judge prompts, badscore (scores out of 1..100) and prose
(grades in words, no JSON), which hold only while the prompt carries no "retry N" marker.
Hostile ones: ra86400, rainf, radate (429 with Retry-After 86400, "inf", an HTTP date a day ahead);
usageneg, usagehuge (usage of -1000000 and 1e30 tokens); badutf8 (the answer carries the bytes ff fe);
huge (a 200 MB chunked body); slowstream (a streamed answer's pieces 0.4 s apart); numcontent, nochoices (a 200 whose content is a number / whose choices are
empty, usage included); offcontract (for synthesis prompts: JSON without "contents", unless retried).

Successful answers follow the request: a synthesis prompt (asking for {"contents": ...}) gets N pairs made
from the request hash, plus an exact duplicate and a test-contaminated pair (and, when the prompt carries
privacy placeholders such as <EMAIL_1>, a pair that reuses them; other answers echo them too); a judge prompt gets a rubric
object with scores made from the request hash; anything else gets {"echo": hash}. Every request is logged as one JSON line (--log) with its body hash,
attempt number, fault and whether it was answered, the requests in flight and whether the key header
matched --expect-key (the key itself is never written).
OpenAI requests with "stream": true get server-sent events (the answer in three pieces, then [DONE]); the legacy
/v1/completions is answered too. The three batch APIs are served too (tests/fault_batches.py); with --log-bodies a
batch's creation logs the bodies of its requests.
Usage: fault_server.py --port-file FILE --log FILE [--port N] [--log-bodies] [--latency S] [--slow S] [--expect-key-env NAME] [--liveness S]
       [--batch-page-size N] [--batch-slow S] [--fail-lists FILE]
"""
import argparse
import hashlib
import json
import os
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fault_batches  # the batch APIs (OpenAI files and batches, Anthropic Message Batches, Gemini batch mode)

LOCK = threading.Lock()
ATTEMPTS = {}
INFLIGHT = {}  # by group: the first word of the user text, so one test's stragglers do not count in the next


def last_user_text(path, body):
    if path.endswith("/chat/completions"):
        return "openai", [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if path.endswith("/completions"):  # the legacy Completions API: a prompt, text back
        return "openai-completions", body["prompt"]
    if path.endswith("/v1/messages"):
        return "anthropic", [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if ":generateContent" in path:
        return "gemini", body["contents"][-1]["parts"][0]["text"]
    return None, None


def reply(wire, text, prompt_tokens, completion_tokens=7):
    if wire == "openai-completions":
        return {"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}
    if wire == "openai":
        return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"}], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}
    if wire == "anthropic":
        return {"id": "x", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}}
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": completion_tokens}}


def unusable_reply(wire, fault, prompt_tokens):
    """A 200 that carries usage but no text the client can use."""
    r = reply(wire, 12345, prompt_tokens)  # content as a number
    if fault == "nochoices":
        r.pop("choices", None), r.pop("content", None), r.pop("candidates", None)
        r.update({"choices": []} if wire == "openai" else {"content": []} if wire == "anthropic" else {"candidates": []})
    return r


def retry_after_value(fault):
    if fault == "ra86400":
        return "86400"
    if fault == "rainf":
        return "inf"
    if fault == "radate":
        return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 86400))
    return "1"


def client_gone(sock):
    """True when the peer has closed its end (a killed client's kernel closes its sockets at once)."""
    try:
        r, _, _ = select.select([sock], [], [], 0)
        return bool(r) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def make_answer(text, h):
    placeholders = sorted(set(re.findall(r"<[A-Z][A-Z0-9_]*_\d+>", text)))  # a scrubbed request's: echoed back
    if '{"contents":' in text:
        m = re.search(r"Write (\d+) new examples", text)
        n = int(m.group(1)) if m else 3
        pairs = [{"instruction": f"Synthetic instruction {h[:8]} number {i}: turn the {i}th of May into a date",
                  "response": f"The date for item {i} of batch {h[:8]} is 2024-05-{i + 1:02d}."} for i in range(n)]
        if placeholders:
            pairs.append({"instruction": f"Batch {h[:8]}: write to " + " and ".join(placeholders),
                          "response": "Written to " + ", ".join(placeholders) + "."})
        if n >= 3:
            pairs.append(dict(pairs[0]))  # an exact duplicate within the reply
            pairs.append({"instruction": "What is the capital of France?", "response": "The capital of France is Paris."})
            pairs.append({"instruction": "", "response": "an answer without a question"})
        return "Here you go:\n```json\n" + json.dumps({"contents": pairs}) + "\n```"
    if "similarity_assessment" in text:
        v = int(h[:8], 16)
        return json.dumps({"similarity_assessment": {"score": 30 + v % 71, "reason": "compared with the reference"},
                           "precision_assessment": {"score": 20 + (v >> 8) % 81, "reason": "checked the instruction"}})
    return json.dumps({"echo": h, "placeholders": placeholders} if placeholders else {"echo": h})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle holds the body until the client's delayed
        # ACK (~40 ms), and a client killed in that time looks like one that received the answer and lost it
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def batch_log(self, entry):
        entry["t"] = time.time()
        with open(ARGS.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def do_GET(self):
        self.log_bodies = ARGS.log_bodies
        if not fault_batches.handle(self, "GET", self.path, b"", reply, make_answer, hashlib, self.batch_log):
            self.send_error(404, "no such route")

    def do_POST(self):
        arrived = time.time()
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.log_bodies = ARGS.log_bodies
        if "/files" in self.path or "/batches" in self.path or ":batchGenerateContent" in self.path:
            if not fault_batches.handle(self, "POST", self.path, raw, reply, make_answer, hashlib, self.batch_log):
                self.send_error(404, "no such route")
            return
        try:
            body = json.loads(raw)
            group = (last_user_text(self.path, body)[1] or "").split(" ")[0]
        except Exception:
            body, group = None, ""
        with LOCK:
            INFLIGHT[group] = INFLIGHT.get(group, 0) + 1
            inflight = INFLIGHT[group]
        try:
            self.handle_post(raw, body, inflight, arrived)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout) or we reset on purpose
        finally:
            with LOCK:
                INFLIGHT[group] -= 1

    def handle_post(self, raw, body, inflight, arrived):
        if body is None:
            self.send_error(400, "body is not JSON")
            return
        h = hashlib.sha256(raw).hexdigest()[:16]
        with LOCK:
            attempt = ATTEMPTS.get(h, 0)
            ATTEMPTS[h] = attempt + 1
        wire, text = last_user_text(self.path, body)
        m = re.search(r"FAULTS:(\S+)", text or "")
        faults = m.group(1).split(",") if m else []
        fault = faults[attempt] if attempt < len(faults) else "none"
        key_ok = None
        if ARGS.expect_key_env:
            want = os.environ.get(ARGS.expect_key_env, "")
            got = self.headers.get("Authorization", "").removeprefix("Bearer ") or self.headers.get("x-api-key", "") or \
                self.headers.get("x-goog-api-key", "")
            key_ok = bool(want) and got == want
        if ARGS.latency:
            time.sleep(ARGS.latency)
        if client_gone(self.connection):
            fault = "client_gone"  # killed while waiting: it never gets this answer, so asking again is fine
        answered = fault in ("none", "slow", "slowstream", "nojson", "badscore", "prose", "usageneg", "usagehuge", "offcontract", "badutf8",
                             "numcontent", "nochoices")
        entry = {"t": arrived, "hash": h, "wire": wire, "attempt": attempt, "fault": fault, "answered": answered,
                 "inflight": inflight, "key_ok": key_ok}
        if ARGS.log_bodies:
            entry["body"] = body  # what the client sent, for tests of what may never leave (test data, PII)
        if fault == "none" and ARGS.liveness:
            self.pending_entry = entry  # logged once we know the client lived to receive it (see respond_ok)
        else:
            with LOCK, open(ARGS.log, "a") as f:
                f.write(json.dumps(entry) + "\n")
        if fault == "client_gone":
            self.close_connection = True
            return
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            self.close_connection = True
            return
        if fault == "slow":
            time.sleep(ARGS.slow)
        if fault == "huge":
            self.send_huge()
            return
        if fault in ("429", "429ra", "500", "503", "400", "ra86400", "rainf", "radate"):
            code = int(fault[:3]) if fault[0].isdigit() else 429
            payload = json.dumps({"error": {"message": f"injected {fault}", "type": "test"}}).encode()
            self.send_response(code)
            if fault not in ("429", "500", "503", "400"):
                self.send_header("Retry-After", retry_after_value(fault))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        answer = make_answer(text, h)
        retried = re.search(r"retry \d", text) is not None
        if fault == "nojson" or (fault == "prose" and not retried):
            answer = "I would rather not use JSON. The answer is fine, I think it deserves a high mark."
        if fault == "badscore" and not retried:
            answer = json.dumps({"similarity_assessment": {"score": 150, "reason": "x"},
                                 "precision_assessment": {"score": 101, "reason": "y"}})
        if fault == "badutf8":
            answer = answer.replace('": "', '": "BADUTF8', 1)
        if fault == "offcontract" and not retried:
            answer = json.dumps({"pairs": "the wrong key"})
        if body.get("stream") and wire.startswith("openai"):
            self.send_stream(wire, answer, 0.4 if fault == "slowstream" else 0.01)
            return
        usage = {"usageneg": -1000000, "usagehuge": 1e30}.get(fault)
        if fault in ("numcontent", "nochoices"):
            payload = json.dumps(unusable_reply(wire, fault, len(text) // 4 + 1)).encode()
        elif usage is not None:
            payload = json.dumps(reply(wire, answer, usage, usage)).encode()
        else:
            payload = json.dumps(reply(wire, answer, len(text) // 4 + 1)).encode()
        if fault == "badutf8":  # raw bytes that are not UTF-8, inside the answer's first string value
            payload = payload.replace(b"BADUTF8", b"bad\xff\xfe", 1)
        if fault == "trunc":
            payload = payload[: len(payload) // 2]
        if fault == "invalid":
            payload = b"<html>gateway error</html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        entry = getattr(self, "pending_entry", None)
        if entry is not None:
            entry["sent"] = time.time()
            # A client killed within --liveness seconds of an answer may not have recorded it; one that lived
            # on had ample time to, so only then does the answer count as received.
            time.sleep(ARGS.liveness)
            if client_gone(self.connection):
                entry["fault"], entry["answered"] = "client_died_after_answer", False
            with LOCK, open(ARGS.log, "a") as f:
                f.write(json.dumps(entry) + "\n")
            self.pending_entry = None

    def send_stream(self, wire, answer, gap):
        """Server-sent events as OpenAI streams them: the answer in three pieces, gap seconds apart, then [DONE]."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        k = max(1, len(answer) // 3)
        pieces = [answer[i:i + k] for i in range(0, len(answer), k)]
        chat = wire == "openai"
        for i, piece in enumerate(pieces):
            choice = {"index": 0, "delta": {"role": "assistant", "content": piece} if i == 0 else {"content": piece}} if chat else \
                {"index": 0, "text": piece}
            choice["finish_reason"] = "stop" if i == len(pieces) - 1 else None
            event = {"id": "x", "object": "chat.completion.chunk" if chat else "text_completion", "choices": [choice]}
            data = b"data: " + json.dumps(event).encode() + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(gap)
        done = b"data: [DONE]\n\n"
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        self.wfile.flush()

    def send_huge(self):
        """200 MB of JSON-looking bytes, chunked, made as they are sent; stops when the client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk, head = b"x" * (1 << 20), b'{"pad": "'
        self.wfile.write(b"%x\r\n%s\r\n" % (len(head), head))
        for _ in range(200):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0, help="listen here (0: any free port); the port file says which")
    ap.add_argument("--log", required=True)
    ap.add_argument("--log-bodies", action="store_true", help="log every request body too")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--slow", type=float, default=3.0)
    ap.add_argument("--expect-key-env", default=None)
    ap.add_argument("--liveness", type=float, default=0.0,
                    help="seconds to watch a client after a clean answer before counting it as received")
    ap.add_argument("--batch-page-size", type=int, default=100, help="the most batches one page of a batch list holds")
    ap.add_argument("--batch-slow", type=float, default=1.0, help="BATCH:slow: seconds a batch stays in its first state")
    ap.add_argument("--fail-lists", default=None, help="while this file exists, every batch list read gets a 503")
    ARGS = ap.parse_args()
    fault_batches.PAGE_SIZE, fault_batches.SLOW_S, fault_batches.FAIL_LISTS = ARGS.batch_page_size, ARGS.batch_slow, ARGS.fail_lists
    class Server(ThreadingHTTPServer):
        request_queue_size = 512  # many clients connect at once: the default backlog of 5 drops SYNs

    Server.allow_reuse_address = True  # a server restarted on its old port (a service that comes back)
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
