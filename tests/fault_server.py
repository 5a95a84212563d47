#!/usr/bin/env python3
"""A local stand-in for the service LLMs, for tests: speaks OpenAI Chat Completions, Anthropic Messages and
Gemini generateContent on 127.0.0.1 and injects faults on request.

The last user message picks the faults: "FAULTS:429,503" makes the first attempt of that exact request get a
429, the second a 503, and the third succeed. Faults: 429, 429ra (429 with Retry-After: 1), 500, 503, 400,
slow (answers after --slow seconds), reset (drops the connection), trunc (truncated JSON), invalid (not JSON),
nojson (a reply without a JSON object). Every request is logged as one JSON line (--log) with its body hash,
attempt number, fault and whether it was answered, the requests in flight and whether the key header
matched --expect-key (the key itself is never written).
Usage: fault_server.py --port-file FILE --log FILE [--latency S] [--slow S] [--expect-key-env NAME]
"""
import argparse
import hashlib
import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
ATTEMPTS = {}
INFLIGHT = {}  # by group: the first word of the user text, so one test's stragglers do not count in the next


def last_user_text(path, body):
    if path.endswith("/chat/completions"):
        return "openai", [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if path.endswith("/v1/messages"):
        return "anthropic", [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if ":generateContent" in path:
        return "gemini", body["contents"][-1]["parts"][0]["text"]
    return None, None


def reply(wire, text, prompt_tokens):
    if wire == "openai":
        return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"}], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7}}
    if wire == "anthropic":
        return {"id": "x", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "usage": {"input_tokens": prompt_tokens, "output_tokens": 7}}
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 7}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        arrived = time.time()
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
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
        answered = fault in ("none", "slow", "nojson")
        entry = {"t": arrived, "hash": h, "wire": wire, "attempt": attempt, "fault": fault, "answered": answered,
                 "inflight": inflight, "key_ok": key_ok}
        with LOCK, open(ARGS.log, "a") as f:
            f.write(json.dumps(entry) + "\n")
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            self.close_connection = True
            return
        if fault == "slow":
            time.sleep(ARGS.slow)
        if fault in ("429", "429ra", "500", "503", "400"):
            code = int(fault[:3])
            payload = json.dumps({"error": {"message": f"injected {fault}", "type": "test"}}).encode()
            self.send_response(code)
            if fault == "429ra":
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        answer = "I would rather not use JSON." if fault == "nojson" else json.dumps({"echo": h})
        payload = json.dumps(reply(wire, answer, len(text) // 4 + 1)).encode()
        if fault == "trunc":
            payload = payload[: len(payload) // 2]
        if fault == "invalid":
            payload = b"<html>gateway error</html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--slow", type=float, default=3.0)
    ap.add_argument("--expect-key-env", default=None)
    ARGS = ap.parse_args()
    class Server(ThreadingHTTPServer):
        request_queue_size = 512  # many clients connect at once: the default backlog of 5 drops SYNs

    srv = Server(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
