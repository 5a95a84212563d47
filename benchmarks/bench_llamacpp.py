#!/usr/bin/env python3
"""The bench_engine workload on llama.cpp (llama-cpp-python's low-level API), as one JSON line:
B sequences each prefilled with P tokens (one llama_decode per sequence), then D decode steps with all B
sequences in every llama_decode. Usage: bench_llamacpp.py MODEL THREADS B P D"""
import json
import sys
import time

import llama_cpp as lc


def main():
    path, threads, B, P, D = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    lc.llama_backend_init()
    mp = lc.llama_model_default_params()
    model = lc.llama_model_load_from_file(path.encode(), mp)
    vocab = lc.llama_model_get_vocab(model)
    n_vocab = lc.llama_vocab_n_tokens(vocab)

    def run(b, p, d):
        cp = lc.llama_context_default_params()
        cp.n_ctx = b * (p + d) + 64
        cp.n_batch = max(p, b)
        cp.n_ubatch = max(p, b)
        cp.n_seq_max = b
        cp.n_threads = threads
        cp.n_threads_batch = threads
        ctx = lc.llama_init_from_model(model, cp)
        batch = lc.llama_batch_init(max(p, b), 0, b)
        t0 = time.perf_counter()
        for s in range(b):
            batch.n_tokens = p
            for i in range(p):
                batch.token[i] = (1103515245 * (i + 7 * s) + 12345) % (n_vocab - 300) + 100
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = s
                batch.logits[i] = i == p - 1
            assert lc.llama_decode(ctx, batch) == 0
        t1 = time.perf_counter()
        for k in range(d):
            batch.n_tokens = b
            for s in range(b):
                batch.token[s] = 100 + (k * 31 + s) % 1000
                batch.pos[s] = p + k
                batch.n_seq_id[s] = 1
                batch.seq_id[s][0] = s
                batch.logits[s] = True
            assert lc.llama_decode(ctx, batch) == 0
        t2 = time.perf_counter()
        lc.llama_batch_free(batch)
        lc.llama_free(ctx)
        return b * p / (t1 - t0), b * d / (t2 - t1)

    run(1, 16, 4)
    p1, d1 = run(1, P, D)
    pb, db = run(B, P, D)
    print(json.dumps({"engine": "llama.cpp", "version": lc.__version__, "threads": threads, "batch": B,
                      "prompt_tokens": P, "decode_tokens": D, "prefill_tps_b1": round(p1, 1), "decode_tps_b1": round(d1, 2),
                      "prefill_tps_bn": round(pb, 1), "decode_tps_bn": round(db, 2)}))
    lc.llama_model_free(model)


if __name__ == "__main__":
    main()
