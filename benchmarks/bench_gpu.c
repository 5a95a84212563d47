// GPU throughput and memory of LoRA training and of batched generation on one model, with random token ids
// (speed is blind to values), as one JSON line — llamaduo's half of benchmarks/gpu_bench.py, which runs HF
// transformers + PEFT on the same model in the same call.
// Usage: bench_gpu MODEL train SEQ BATCH [--steps N] [--warmup N] [--rank R] [--precision fp32|bf16]
//        bench_gpu MODEL generate BATCH PROMPT NEW [--precision fp32|bf16]
// train: BATCH records of SEQ tokens per step (packed: no attention across records), LoRA rank R (alpha 2R) on
// all seven linears, AdamW; tok/s over the steps after the warm-up. generate: BATCH prompts of PROMPT tokens,
// NEW greedy tokens each with no stop, on one engine (weights uploaded once, before the clock starts); output
// tok/s over prefill + decode. peak_GiB: the most device memory held through the backend's allocator.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_device.h"
#include "generate.h"
#include "kernels_cuda.h"
#include "train_gpu.h"
#include "util.h"

static void fail(const char *what) {
    fprintf(stderr, "bench_gpu: %s: %s\n", what, ld_last_error());
    exit(1);
}

static unsigned lcg(unsigned *s) { return *s = *s * 1103515245u + 12345u; }

static void bench_train(Model *m, int seq, int batch, int steps, int warm, int rank, LdDtype wt) {
    int T = seq * batch, V = m->cfg.vocab, c;
    Lora *lora = lora_new(&m->cfg, rank, 2.0f * rank, 0, (1u << LT_COUNT) - 1);
    lora->dropout = 0;
    int *tok = malloc(sizeof(int) * T), *tgt = malloc(sizeof(int) * T), *pos = malloc(sizeof(int) * T),
        *starts = malloc(sizeof(int) * batch);
    unsigned s = 1;
    for (int i = 0; i < T; i++) tok[i] = (int)(lcg(&s) >> 8) % V, pos[i] = i % seq;
    for (int i = 0; i < T; i++) tgt[i] = pos[i] == seq - 1 ? -100 : tok[i + 1];  // next token within the record (HF's shifted labels)
    for (int b = 0; b < batch; b++) starts[b] = b * seq;
    TrainBatch tb = {tok, tgt, pos, starts, T, batch, 0, 0};
    GpuTrainer *g = gpu_trainer_new(m, lora, wt);
    if (!g) fail("gpu_trainer_new");
    double t0 = 0;
    float loss = 0;
    for (int i = 0; i < warm + steps; i++) {
        if (i == warm) t0 = ld_time_s();
        gpu_trainer_zero_grad(g);
        loss = gpu_trainer_loss_and_grad(g, &tb, &c, 1, 0);
        if (loss != loss) fail("training step");
        gpu_trainer_adamw(g, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f);  // reads the gradient norm back: the step is done
    }
    double dt = (ld_time_s() - t0) / steps;
    size_t peak;
    kc_mem_stats(NULL, &peak);
    printf(
        "{\"engine\": \"llamaduo\", \"workload\": \"train\", \"precision\": \"%s\", \"seq\": %d, \"bsz\": %d, \"rank\": %d, \"steps\": %d, "
        "\"tok_per_s\": %.0f, \"step_s\": %.4f, \"peak_mem_GiB\": %.2f, \"loss\": %.4f}\n",
        wt == LD_BF16 ? "bf16" : "fp32", seq, batch, rank, steps, T / dt, dt, peak / 1073741824.0, loss);
    gpu_trainer_free(g);
    lora_free(lora);
    free(tok), free(tgt), free(pos), free(starts);
}

static void run_batch(GenEngine *e, GenSeq *seqs, int n) {
    for (int i = 0; i < n; i++)
        if (gen_engine_add(e, &seqs[i])) fail("gen_engine_add");
    while (gen_engine_active(e) > 0)
        if (gen_engine_step(e) < 0) fail("gen_engine_step");
}

static void bench_generate(Model *m, int batch, int plen, int nnew, LdDtype wt) {
    GenEngine *e = gen_engine_new(m, batch, plen + nnew, 512, 1, wt == LD_BF16);
    if (!e) fail("gen_engine_new");
    int *prompts = malloc(sizeof(int) * (size_t)batch * plen);
    unsigned s = 7;
    for (int i = 0; i < batch * plen; i++) prompts[i] = (int)(lcg(&s) >> 8) % m->cfg.vocab;
    GenSeq *seqs = calloc((size_t)batch, sizeof(GenSeq));
    for (int i = 0; i < batch; i++)  // greedy, no stop ids: every sequence makes exactly nnew tokens
        seqs[i] = (GenSeq){
            .prompt = prompts + (size_t)i * plen, .n_prompt = plen, .max_new_tokens = nnew < 8 ? nnew : 8, .sampler = sampler_defaults()};
    run_batch(e, seqs, batch < 4 ? batch : 4);  // warm-up: cuBLAS handles, the kept-logits buffer
    for (int i = 0; i < batch; i++) gen_seq_free(&seqs[i]), seqs[i].max_new_tokens = nnew;
    double t0 = ld_time_s();
    run_batch(e, seqs, batch);
    double dt = ld_time_s() - t0;
    long made = 0;
    for (int i = 0; i < batch; i++) made += seqs[i].n_tokens, gen_seq_free(&seqs[i]);
    size_t peak;
    kc_mem_stats(NULL, &peak);
    printf(
        "{\"engine\": \"llamaduo\", \"workload\": \"generate\", \"precision\": \"%s\", \"bsz\": %d, \"prompt\": %d, \"new\": %d, "
        "\"out_tok_per_s\": %.0f, \"s\": %.2f, \"tokens\": %ld, \"peak_mem_GiB\": %.2f}\n",
        wt == LD_BF16 ? "bf16" : "fp32", batch, plen, nnew, made / dt, dt, made, peak / 1073741824.0);
    gen_engine_free(e);
    free(prompts), free(seqs);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr,
                "usage: bench_gpu MODEL train SEQ BATCH [--steps N] [--warmup N] [--rank R] [--precision fp32|bf16]\n"
                "       bench_gpu MODEL generate BATCH PROMPT NEW [--precision fp32|bf16]\n");
        return 2;
    }
    if (ld_cuda_device_count() == 0) {
        fprintf(stderr, "bench_gpu: no CUDA device\n");
        return 1;
    }
    int steps = 8, warm = 3, rank = 16, train = !strcmp(argv[2], "train"), first_opt = train ? 5 : 6;
    LdDtype wt = LD_BF16;
    for (int i = first_opt; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warm = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rank"))
            rank = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision"))
            wt = !strcmp(argv[i + 1], "fp32") ? LD_F32 : LD_BF16;
        else {
            fprintf(stderr, "bench_gpu: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    Model *m = model_load(argv[1]);
    if (!m) fail(argv[1]);
    if (train)
        bench_train(m, atoi(argv[3]), atoi(argv[4]), steps, warm, rank, wt);
    else if (argc >= 6 && !strcmp(argv[2], "generate"))
        bench_generate(m, atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), wt);
    else {
        fprintf(stderr, "bench_gpu: the workload is train or generate, not '%s'\n", argv[2]);
        return 2;
    }
    model_free(m);
    return 0;
}
