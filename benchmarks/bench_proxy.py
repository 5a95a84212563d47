#!/usr/bin/env python3
"""Open-loop latency at a fixed request rate: POST /v1/chat/completions to URL at RATE requests/s for SECONDS,
each request on a pooled keep-alive connection, its latency from when it was due (so a backed-up server's queueing
counts). Prints JSON: sent, errors, p50/p90/p99 ms, the rate achieved.
Usage: bench_proxy.py BASE_URL RATE SECONDS"""
import http.client
import json
import queue
import sys
import threading
import time
import urllib.parse


def main():
    base, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    u = urllib.parse.urlparse(base)
    path = u.path.rstrip("/") + "/chat/completions"
    due, lat, errors, lock = queue.Queue(), [], [0], threading.Lock()

    def worker():
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while (item := due.get()) is not None:
            t_due, i = item
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"bench {i}"}]})
            try:
                c.request("POST", path, body=body, headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
                r = c.getresponse()
                r.read()
                ok = r.status == 200
            except OSError:
                ok = False
                c.close()
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            with lock:
                if ok:
                    lat.append(time.monotonic() - t_due)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    t0, n = time.monotonic(), int(rate * seconds)
    for i in range(n):
        t_due = t0 + i / rate
        time.sleep(max(0, t_due - time.monotonic()))
        due.put((t_due, i))
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    lat.sort()
    pct = lambda p: round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None  # noqa: E731
    print(json.dumps({"sent": n, "errors": errors[0], "rate": round(n / wall, 1), "p50_ms": pct(0.5), "p90_ms": pct(0.9),
                      "p99_ms": pct(0.99)}))


if __name__ == "__main__":
    main()
