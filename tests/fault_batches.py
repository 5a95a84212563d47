"""The OpenAI Batch API and Anthropic's Message Batches for tests/fault_server.py. OpenAI: POST /v1/files (multipart, purpose "batch"), POST /v1/batches,
GET /v1/batches/{id} (each poll moves a batch on: validating, in_progress, finalizing, then its end), GET /v1/batches
(the list, with metadata), POST /v1/batches/{id}/cancel, GET /v1/files/{id}/content. Results come back in shuffled
order. A marker in any request of a batch picks its end: BATCH:expired (half the requests answered, the rest
"batch_expired" in the error file), BATCH:failed (status failed, errors), BATCH:cancelled, BATCH:partial (every third
request answered with a 500 in the error file); otherwise completed. BATCH:refused answers every third with a 400. BATCH:nodownload makes the first three downloads
of its result files fail. The answers are what the synchronous endpoint
would give (the same make_answer). Anthropic: POST /v1/messages/batches ({requests: [{custom_id, params}]}), GET
/v1/messages/batches/{id} (in_progress, then ended with a results_url), GET .../results (JSONL {custom_id, result:
{type: succeeded | errored | canceled | expired}}, shuffled), GET /v1/messages/batches (the list); the same markers,
BATCH:failed refusing the batch at creation as Anthropic refuses an invalid one. Gemini: POST
/v1beta/models/{model}:batchGenerateContent (inline requests, each with metadata.key), GET /v1beta/batches/{id} (a
long-running operation: BATCH_STATE_PENDING, RUNNING, then its end with the responses inline), GET /v1beta/batches
(the list); BATCH:failed ends in BATCH_STATE_FAILED with an error; BATCH:nokeys answers without the metadata keys, in
request order; BATCH:refused answers every third request with a 400 on every wire. BATCH:slow holds a batch in its
first state until SLOW_S seconds after its creation (batches that overlap in time, or outlast a deadline).
Every batch's results, when made, are logged ("results": the custom_id and body hash of each request answered), so
a test counts requests answered twice across batches and synchronous calls. The lists come in pages of PAGE_SIZE,
newest first (OpenAI after / has_more / last_id, Anthropic after_id / has_more / last_id, Gemini pageToken /
nextPageToken); while the file FAIL_LISTS names exists, every list read gets a 503."""
import json
import os
import random
import re
import threading
import time
from hashlib import sha256
from urllib.parse import parse_qs

LOCK = threading.Lock()
FILES, BATCHES = {}, {}
STAGES = ["validating", "in_progress", "finalizing"]
PAGE_SIZE, FAIL_LISTS, SLOW_S = 100, None, 1.0  # set by fault_server.py's options


def _held(batch):
    """BATCH:slow: not yet allowed to move on."""
    return any("BATCH:slow" in t for t in batch["texts"]) and time.time() - batch["t0"] < SLOW_S


def _answered(log, bid, rows):
    """The requests a batch answered (rows of (custom_id, raw body)), for counting what was answered twice."""
    log({"batch_api": "results", "batch": bid, "custom_ids": [c for c, _ in rows],
         "hashes": [sha256(raw).hexdigest()[:16] for _, raw in rows]})


def _list(send, log, query, items, id_of, wire):
    """One page of a batch list, newest first, as each provider pages it; a 503 while FAIL_LISTS exists."""
    if FAIL_LISTS and os.path.exists(FAIL_LISTS):
        send(503, {"error": {"message": "injected: the list is unavailable"}})
        return
    q = {k: v[0] for k, v in parse_qs(query).items()}
    size = min(int(q.get("limit") or q.get("pageSize") or 20), PAGE_SIZE)
    start = 0
    after = q.get("after_id" if wire == "anthropic" else "after")
    if wire == "gemini" and q.get("pageToken"):
        start = int(q["pageToken"].split("/")[1].rstrip("="))  # "o/N=": a token that needs escaping in a URL
    elif after:
        start = next(i + 1 for i, x in enumerate(items) if id_of(x) == after)
    page, more = items[start:start + size], start + size < len(items)
    log({"batch_api": "list", "wire": wire, "start": start, "batches": len(page)})
    if wire == "gemini":
        send(200, {"operations": page, **({"nextPageToken": f"o/{start + size}="} if more else {})})
    else:
        send(200, {"object": "list", "data": page, "has_more": more, "first_id": id_of(page[0]) if page else None,
                   "last_id": id_of(page[-1]) if page else None})


def _multipart_file(raw, content_type):
    m = re.search(r"boundary=([^;]+)", content_type)
    if not m:
        return None, None
    boundary = m.group(1).strip('"').encode()
    purpose, data = None, None
    for part in raw.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, body = part.split(b"\r\n\r\n", 1)
        body = body[:-2] if body.endswith(b"\r\n") else body
        if b'name="purpose"' in head:
            purpose = body.decode()
        elif b'name="file"' in head:
            data = body
    return purpose, data


def _new_id(prefix, table):
    return f"{prefix}-{len(table) + 1:04d}"


def _end_of(batch):
    text = "\n".join(batch["texts"])
    for end in ("expired", "failed", "cancelled", "partial", "refused"):
        if f"BATCH:{end}" in text:
            return end
    return "completed"


def _finish(batch, reply, make_answer, hashlib, log):
    """Writes the output and error files of a batch that has ended."""
    end = _end_of(batch) if batch["status"] != "cancelling" else "cancelled"
    out, err = [], []
    for i, (cid, body, raw) in enumerate(batch["requests"]):
        text = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        h = hashlib.sha256(raw).hexdigest()[:16]
        if end in ("failed",) or (end in ("expired", "cancelled") and i % 2 == 1):
            if end != "failed":
                code = "batch_expired" if end == "expired" else "batch_cancelled"
                err.append({"id": f"r{i}", "custom_id": cid, "response": None, "error": {"code": code, "message": "not run"}})
            continue
        if end in ("partial", "refused") and i % 3 == 2:
            code = 500 if end == "partial" else 400  # refused: the request itself is invalid
            err.append({"id": f"r{i}", "custom_id": cid, "response": {"status_code": code, "body": {"error": {"message": "injected"}}},
                        "error": None})
            continue
        answer = make_answer(text, h)
        out.append({"id": f"r{i}", "custom_id": cid,
                    "response": {"status_code": 200, "body": reply("openai", answer, len(text) // 4 + 1)}, "error": None})
    raw_of = {cid: raw for cid, _, raw in batch["requests"]}
    _answered(log, batch["id"], [(r["custom_id"], raw_of[r["custom_id"]]) for r in out])
    random.Random(batch["id"]).shuffle(out)  # results come back in any order
    random.Random(batch["id"] + "e").shuffle(err)
    batch["status"] = {"completed": "completed", "partial": "completed", "refused": "completed", "expired": "expired",
                       "failed": "failed", "cancelled": "cancelled"}[end]
    if end == "failed":
        batch["errors"] = {"data": [{"code": "invalid_request", "message": "injected: the batch failed validation"}]}
    for rows, key in ((out, "output_file_id"), (err, "error_file_id")):
        if rows:
            fid = _new_id("file", FILES)
            FILES[fid] = {"purpose": "batch_output", "data": "".join(json.dumps(r) + "\n" for r in rows).encode(),
                          "fail_downloads": 3 if "BATCH:nodownload" in "\n".join(batch["texts"]) else 0}
            batch[key] = fid
    batch["request_counts"] = {"total": len(batch["requests"]), "completed": len(out), "failed": len(err)}


def _public(b):
    return {k: v for k, v in b.items() if k not in ("requests", "texts", "polls", "t0")}


ANTHROPIC = {}


def _anthropic_results(batch, reply, make_answer, hashlib, log):
    end = _end_of(batch)
    rows, answered = [], []
    for i, (cid, body, raw) in enumerate(batch["requests"]):
        text = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        if end in ("expired", "cancelled") and i % 2 == 1:
            rows.append({"custom_id": cid, "result": {"type": "expired" if end == "expired" else "canceled"}})
        elif end in ("partial", "refused") and i % 3 == 2:
            kind = "api_error" if end == "partial" else "invalid_request_error"  # refused: the request itself is invalid
            rows.append({"custom_id": cid, "result": {"type": "errored", "error": {"type": "error",
                         "error": {"type": kind, "message": "injected"}}}})
        else:
            answer = make_answer(text, hashlib.sha256(raw).hexdigest()[:16])
            rows.append({"custom_id": cid, "result": {"type": "succeeded", "message": reply("anthropic", answer, len(text) // 4 + 1)}})
            answered.append((cid, raw))
    _answered(log, batch["id"], answered)
    random.Random(batch["id"]).shuffle(rows)
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _anthropic_public(b):
    return {k: v for k, v in b.items() if k not in ("requests", "texts", "polls", "results", "t0")}


def _handle_anthropic(handler, method, p, query, raw, reply, make_answer, hashlib, log, send):
    if method == "POST" and p.endswith("/v1/messages/batches"):
        body = json.loads(raw)
        reqs = body.get("requests") or []
        texts = [[m for m in r["params"]["messages"] if m["role"] == "user"][-1]["content"] for r in reqs]
        if any("BATCH:failed" in t for t in texts):
            send(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "injected: the batch failed validation"}})
            return True
        bid = f"msgbatch_{len(ANTHROPIC) + 1:04d}"
        # the params as a single call sends them (compact JSON, the client's order): the same answer's hash
        raws = [json.dumps(r["params"], separators=(",", ":"), ensure_ascii=False).encode() for r in reqs]
        ANTHROPIC[bid] = {"id": bid, "type": "message_batch", "processing_status": "in_progress",
                          "request_counts": {"processing": len(reqs), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
                          "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "results_url": None,
                          "requests": [(r["custom_id"], r["params"], raw) for r, raw in zip(reqs, raws)], "texts": texts, "polls": 0,
                          "t0": time.time()}
        log({"batch_api": "create", "batch": bid, "requests": len(reqs),
             "bodies": [r["params"] for r in reqs] if getattr(handler, "log_bodies", False) else None})
        send(200, _anthropic_public(ANTHROPIC[bid]))
        return True
    m = re.match(r".*/v1/messages/batches/([^/]+)/results$", p)
    if method == "GET" and m and m.group(1) in ANTHROPIC:
        b = ANTHROPIC[m.group(1)]
        log({"batch_api": "download", "batch": b["id"]})
        send(200, b["results"])
        return True
    m = re.match(r".*/v1/messages/batches/([^/]+)$", p)
    if method == "GET" and m:
        b = ANTHROPIC.get(m.group(1))
        if b is None:
            send(404, {"type": "error", "error": {"type": "not_found_error", "message": "no such batch"}})
            return True
        b["polls"] += 0 if _held(b) else 1
        if b["processing_status"] == "in_progress" and b["polls"] >= 2:
            b["results"] = _anthropic_results(b, reply, make_answer, hashlib, log)
            rows = [json.loads(l) for l in b["results"].decode().splitlines()]
            kinds = [r["result"]["type"] for r in rows]
            b["request_counts"] = {"processing": 0, "succeeded": kinds.count("succeeded"), "errored": kinds.count("errored"),
                                   "canceled": kinds.count("canceled"), "expired": kinds.count("expired")}
            b["processing_status"] = "ended"
            host = handler.headers.get("Host", "127.0.0.1")
            b["results_url"] = f"http://{host}{p}/results"
        log({"batch_api": "poll", "batch": b["id"], "status": b["processing_status"]})
        send(200, _anthropic_public(b))
        return True
    if method == "GET" and p.endswith("/v1/messages/batches"):
        _list(send, log, query, [_anthropic_public(b) for b in reversed(list(ANTHROPIC.values()))], lambda b: b["id"], "anthropic")
        return True
    return False


GEMINI = {}


def _gemini_finish(b, reply, make_answer, hashlib, log):
    end = _end_of(b)
    items, answered = [], []
    for i, (key, req, raw) in enumerate(b["requests"]):
        text = req["contents"][-1]["parts"][0]["text"]
        if end == "failed" or (end in ("expired", "cancelled") and i % 2 == 1):
            continue
        if end in ("partial", "refused") and i % 3 == 2:  # refused: the request itself is invalid (a 400)
            # a google.rpc.Status, as Gemini's batch gives it: 13 INTERNAL (may pass), 3 INVALID_ARGUMENT (final)
            err = {"code": 13, "status": "INTERNAL"} if end == "partial" else {"code": 3, "status": "INVALID_ARGUMENT"}
            items.append({"error": {**err, "message": "injected"}, "metadata": {"key": key}})
            continue
        answer = make_answer(text, hashlib.sha256(raw).hexdigest()[:16])
        items.append({"response": reply("gemini", answer, len(text) // 4 + 1), "metadata": {"key": key}})
        answered.append((key, raw))
    _answered(log, b["name"], answered)
    if "BATCH:nokeys" in "\n".join(b["texts"]):  # as the real service has been seen to answer: no keys, in request order
        for x in items:
            x.pop("metadata", None)
    else:
        random.Random(b["name"]).shuffle(items)
    state = {"completed": "SUCCEEDED", "partial": "SUCCEEDED", "refused": "SUCCEEDED", "expired": "EXPIRED", "failed": "FAILED", "cancelled": "CANCELLED"}[end]
    b["metadata"]["state"] = "BATCH_STATE_" + state
    b["metadata"]["batchStats"] = {"requestCount": str(len(b["requests"])), "successfulRequestCount": str(sum("response" in x for x in items)),
                                   "failedRequestCount": str(sum("error" in x for x in items))}
    b["done"] = True
    if end == "failed":
        b["error"] = {"code": 400, "message": "injected: the batch failed validation"}
    else:
        b["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
                         "inlinedResponses": {"inlinedResponses": items}}


def _gemini_public(b):
    return {k: v for k, v in b.items() if k not in ("requests", "texts", "polls", "t0")}


def _handle_gemini(handler, method, p, query, raw, reply, make_answer, hashlib, log, send):
    m = re.match(r".*/v1beta/models/([^/:]+):batchGenerateContent$", p)
    if method == "POST" and m:
        batch = json.loads(raw)["batch"]
        reqs = batch["input_config"]["requests"]["requests"]
        name = f"batches/{len(GEMINI) + 1:06d}"
        raws = [json.dumps(r["request"], separators=(",", ":"), ensure_ascii=False).encode() for r in reqs]
        GEMINI[name] = {"name": name, "metadata": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                                                   "model": "models/" + m.group(1), "displayName": batch.get("display_name"),
                                                   "state": "BATCH_STATE_PENDING", "batchStats": {"requestCount": str(len(reqs))}},
                        "requests": [(r["metadata"]["key"], r["request"], raw) for r, raw in zip(reqs, raws)],
                        "texts": [r["request"]["contents"][-1]["parts"][0]["text"] for r in reqs], "polls": 0, "t0": time.time()}
        log({"batch_api": "create", "batch": name, "requests": len(reqs),
             "bodies": [r["request"] for r in reqs] if getattr(handler, "log_bodies", False) else None})
        send(200, _gemini_public(GEMINI[name]))
        return True
    m = re.match(r".*/v1beta/(batches/[^/]+)$", p)
    if method == "GET" and m:
        b = GEMINI.get(m.group(1))
        if b is None:
            send(404, {"error": {"code": 404, "message": "no such batch", "status": "NOT_FOUND"}})
            return True
        b["polls"] += 0 if _held(b) else 1
        if not b.get("done") and b["polls"]:
            if b["polls"] == 1:
                b["metadata"]["state"] = "BATCH_STATE_RUNNING"
            else:
                _gemini_finish(b, reply, make_answer, hashlib, log)
        log({"batch_api": "poll", "batch": b["name"], "status": b["metadata"]["state"]})
        if b.get("done"):
            log({"batch_api": "download", "batch": b["name"]})
        send(200, _gemini_public(b))
        return True
    if method == "GET" and p.endswith("/v1beta/batches"):
        _list(send, log, query, [_gemini_public(b) for b in reversed(list(GEMINI.values()))], lambda b: b["name"], "gemini")
        return True
    return False


def handle(handler, method, path, raw, reply, make_answer, hashlib, log):
    """Answers a batch API call; False when the path is not one (the caller goes on)."""
    def send(code, obj):
        payload = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json" if not isinstance(obj, bytes) else "application/jsonl")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
    p, _, query = path.partition("?")
    with LOCK:
        if "/v1/messages/batches" in p:
            return _handle_anthropic(handler, method, p, query, raw, reply, make_answer, hashlib, log, send)
        if "/v1beta/" in p and ("batches" in p or ":batchGenerateContent" in p):
            return _handle_gemini(handler, method, p, query, raw, reply, make_answer, hashlib, log, send)
        if method == "POST" and p.endswith("/v1/files"):
            purpose, data = _multipart_file(raw, handler.headers.get("Content-Type", ""))
            if purpose != "batch" or data is None:
                send(400, {"error": {"message": "a batch file needs purpose=batch and a file part"}})
                return True
            fid = _new_id("file", FILES)
            FILES[fid] = {"purpose": purpose, "data": data}
            log({"batch_api": "upload", "file": fid, "bytes": len(data)})
            send(200, {"id": fid, "object": "file", "purpose": purpose, "bytes": len(data)})
            return True
        if method == "POST" and p.endswith("/v1/batches"):
            body = json.loads(raw)
            f = FILES.get(body.get("input_file_id"))
            if f is None or body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
                send(400, {"error": {"message": "bad batch request"}})
                return True
            lines = [l for l in f["data"].decode().splitlines() if l.strip()]
            reqs = [json.loads(l) for l in lines]
            # the body as sent (the line ends with "body": BODY}): its hash picks the same answer as a synchronous call
            raws = [l[l.index('"body":') + 7: l.rindex("}")].strip().encode() for l in lines]
            bid = _new_id("batch", BATCHES)
            BATCHES[bid] = {"id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": body["input_file_id"],
                            "status": "validating", "metadata": body.get("metadata") or {}, "created_at": int(time.time()),
                            "request_counts": {"total": len(reqs), "completed": 0, "failed": 0},
                            "requests": [(r["custom_id"], r["body"], raw) for r, raw in zip(reqs, raws)],
                            "texts": [[m for m in r["body"]["messages"] if m["role"] == "user"][-1]["content"] for r in reqs],
                            "polls": 0, "t0": time.time()}
            log({"batch_api": "create", "batch": bid, "requests": len(reqs),
                 "bodies": [r["body"] for r in reqs] if getattr(handler, "log_bodies", False) else None})
            send(200, _public(BATCHES[bid]))
            return True
        m = re.match(r".*/v1/batches/([^/]+)/cancel$", p)
        if method == "POST" and m and m.group(1) in BATCHES:
            BATCHES[m.group(1)]["status"] = "cancelling"
            send(200, _public(BATCHES[m.group(1)]))
            return True
        m = re.match(r".*/v1/batches/([^/]+)$", p)
        if method == "GET" and m:
            b = BATCHES.get(m.group(1))
            if b is None:
                send(404, {"error": {"message": "no such batch"}})
                return True
            if (b["status"] in STAGES or b["status"] == "cancelling") and not _held(b):
                b["polls"] += 1
                if b["status"] != "cancelling" and b["polls"] < len(STAGES):
                    b["status"] = STAGES[b["polls"]]
                else:
                    _finish(b, reply, make_answer, hashlib, log)
            log({"batch_api": "poll", "batch": b["id"], "status": b["status"]})
            send(200, _public(b))
            return True
        if method == "GET" and p.endswith("/v1/batches"):
            _list(send, log, query, [_public(b) for b in reversed(list(BATCHES.values()))], lambda b: b["id"], "openai")
            return True
        m = re.match(r".*/v1/files/([^/]+)/content$", p)
        if method == "GET" and m:
            f = FILES.get(m.group(1))
            if f is not None and f.get("fail_downloads", 0) > 0:  # BATCH:nodownload: the first three downloads fail
                f["fail_downloads"] -= 1
                log({"batch_api": "download_failed", "file": m.group(1)})
                send(500, {"error": {"message": "injected: download failed"}})
            elif f is None:
                send(404, {"error": {"message": "no such file"}})
            else:
                log({"batch_api": "download", "file": m.group(1)})
                send(200, f["data"])
            return True
    return False
