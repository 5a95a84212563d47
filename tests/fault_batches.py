"""The OpenAI Batch API for tests/fault_server.py: POST /v1/files (multipart, purpose "batch"), POST /v1/batches,
GET /v1/batches/{id} (each poll moves a batch on: validating, in_progress, finalizing, then its end), GET /v1/batches
(the list, with metadata), POST /v1/batches/{id}/cancel, GET /v1/files/{id}/content. Results come back in shuffled
order. A marker in any request of a batch picks its end: BATCH:expired (half the requests answered, the rest
"batch_expired" in the error file), BATCH:failed (status failed, errors), BATCH:cancelled, BATCH:partial (every third
request answered with a 500 in the error file); otherwise completed. The answers are what the synchronous endpoint
would give (the same make_answer)."""
import json
import random
import re
import threading
import time

LOCK = threading.Lock()
FILES, BATCHES = {}, {}
STAGES = ["validating", "in_progress", "finalizing"]


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
    for end in ("expired", "failed", "cancelled", "partial"):
        if f"BATCH:{end}" in text:
            return end
    return "completed"


def _finish(batch, reply, make_answer, hashlib):
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
        if end == "partial" and i % 3 == 2:
            err.append({"id": f"r{i}", "custom_id": cid, "response": {"status_code": 500, "body": {"error": {"message": "injected"}}},
                        "error": None})
            continue
        answer = make_answer(text, h)
        out.append({"id": f"r{i}", "custom_id": cid,
                    "response": {"status_code": 200, "body": reply("openai", answer, len(text) // 4 + 1)}, "error": None})
    random.Random(batch["id"]).shuffle(out)  # results come back in any order
    random.Random(batch["id"] + "e").shuffle(err)
    batch["status"] = {"completed": "completed", "partial": "completed", "expired": "expired", "failed": "failed",
                       "cancelled": "cancelled"}[end]
    if end == "failed":
        batch["errors"] = {"data": [{"code": "invalid_request", "message": "injected: the batch failed validation"}]}
    for rows, key in ((out, "output_file_id"), (err, "error_file_id")):
        if rows:
            fid = _new_id("file", FILES)
            FILES[fid] = {"purpose": "batch_output", "data": "".join(json.dumps(r) + "\n" for r in rows).encode()}
            batch[key] = fid
    batch["request_counts"] = {"total": len(batch["requests"]), "completed": len(out), "failed": len(err)}


def _public(b):
    return {k: v for k, v in b.items() if k not in ("requests", "texts", "polls")}


def handle(handler, method, path, raw, reply, make_answer, hashlib, log):
    """Answers a batch API call; False when the path is not one (the caller goes on)."""
    def send(code, obj):
        payload = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json" if not isinstance(obj, bytes) else "application/jsonl")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
    p = path.split("?")[0]
    with LOCK:
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
                            "polls": 0}
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
            if b["status"] in STAGES or b["status"] == "cancelling":
                b["polls"] += 1
                if b["status"] != "cancelling" and b["polls"] < len(STAGES):
                    b["status"] = STAGES[b["polls"]]
                else:
                    _finish(b, reply, make_answer, hashlib)
            log({"batch_api": "poll", "batch": b["id"], "status": b["status"]})
            send(200, _public(b))
            return True
        if method == "GET" and p.endswith("/v1/batches"):
            send(200, {"object": "list", "data": [_public(b) for b in reversed(list(BATCHES.values()))], "has_more": False})
            return True
        m = re.match(r".*/v1/files/([^/]+)/content$", p)
        if method == "GET" and m:
            f = FILES.get(m.group(1))
            if f is None:
                send(404, {"error": {"message": "no such file"}})
            else:
                log({"batch_api": "download", "file": m.group(1)})
                send(200, f["data"])
            return True
    return False
