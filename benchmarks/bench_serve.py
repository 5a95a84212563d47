#!/usr/bin/env python3
"""Aggregate output tokens/s of an OpenAI-compatible server at several client concurrencies: every client sends
/v1/completions requests (greedy, max_tokens N) back to back until the level's request count is done; tokens are
the servers' own usage counts. Prints one JSON line {"level": {"requests", "tokens", "seconds", "tps", "p50_ms",
"p90_ms"}}. Usage: bench_serve.py BASE_URL MODEL_NAME MAX_TOKENS LEVEL...   (stdlib only)"""
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlparse

PROMPTS = ["Once upon a time, in a village by the sea,", "The history of the printing press begins",
           "Here is a recipe for a simple tomato soup:", "The three laws of motion state that",
           "A good bug report contains", "In the year 2050, cities will", "The main causes of the French Revolution were",
           "To learn a new language quickly, you should"]


def run_level(url, model, max_tokens, clients):
    u = urlparse(url)
    n_requests = max(4, 2 * clients)
    lock, next_i, lat, tokens = threading.Lock(), [0], [], [0]

    def client():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n_requests:
                return
            body = json.dumps({"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0})
            t0 = time.time()
            conn.request("POST", u.path.rstrip("/") + "/completions", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = json.loads(r.read())
            if r.status != 200:
                raise SystemExit(f"HTTP {r.status}: {data}")
            with lock:
                lat.append(time.time() - t0)
                tokens[0] += data["usage"]["completion_tokens"]
    t0 = time.time()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.time() - t0
    lat.sort()
    return {"requests": n_requests, "tokens": tokens[0], "seconds": round(dt, 2), "tps": round(tokens[0] / dt, 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000), "p90_ms": round(lat[int(len(lat) * 0.9)] * 1000)}


def main():
    url, model, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run_level(url, model, 8, 1)  # warm-up
    print(json.dumps({lvl: run_level(url, model, max_tokens, int(lvl)) for lvl in sys.argv[4:]}))


if __name__ == "__main__":
    main()
