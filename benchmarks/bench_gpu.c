// GPU throughput and memory of LoRA training and of batched generation on one model, with random token ids
// (speed is blind to values), as one JSON line — llamaduo's half of benchmarks/gpu_bench.py, which runs HF
// transformers + PEFT on the same model in the same call.
// Usage: bench_gpu MODEL train SEQ BATCH [--steps N] [--warmup N] [--rank R] [--precision fp32|bf16] [--recompute 1]
//        [--count 1]
//        bench_gpu MODEL generate BATCH PROMPT NEW [--precision fp32|bf16] [--ctx N] [--count 1]
// train: BATCH records of SEQ tokens per step (packed: no attention across records), LoRA rank R (alpha 2R) on
// all seven linears, AdamW (--recompute 1: activation checkpointing); tok/s over the steps after the warm-up.
// generate: BATCH prompts of PROMPT tokens, NEW greedy tokens each with no stop, on one engine (weights uploaded once, before the clock starts); output
// tok/s over prefill + decode; --ctx N: the engine made for sequences of up to N tokens (as `serve --ctx` makes it;
// default PROMPT + NEW). peak_GiB: the most device memory held through the backend's allocator.
// --count (bench_gpu_emu, the build against the CUDA emulator): instead of timing, one training step or one decode
// step's kernel launches and device-memory bytes per kernel (tests/cuda_emu/emu_count.h), against the least
// traffic such a step could have (ideal_* below), as a table and a JSON line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_device.h"
#include "generate.h"
#include "kernels_cuda.h"
#include "train_gpu.h"
#include "util.h"
#ifdef BENCH_GPU_EMU
#include "emu_count.h"
#endif

static void fail(const char *what) {
    fprintf(stderr, "bench_gpu: %s: %s\n", what, ld_last_error());
    exit(1);
}

static unsigned lcg(unsigned *s) { return *s = *s * 1103515245u + 12345u; }

static int g_count;  // --count
static int g_recompute;  // --recompute

#ifdef BENCH_GPU_EMU
// ---- the least traffic of a step, for --count: the weights read once per step, every activation an op reads or
// writes moved once (no copies, no conversions, no re-reads), act_bytes per activation value. ----

// Launches of a fused graph: the forward's nine ops a layer (act_values_per_token's list), twice as many going back,
// and the embedding, the head + loss, the gradient norm and AdamW (training), or the embedding, head and sampler.
static long ideal_launches(const ModelConfig *c, int train) { return train ? 27L * c->n_layers + 4 : 9L * c->n_layers + 3; }

// Activation values moved per token per layer in the forward pass, op by op as the model runs them (transformer_forward.c).
static double act_values_per_token(const ModelConfig *c, int rank) {
    double D = c->dim, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    double qkv = D + qd + 2 * kvd;  // x in, q k v out (one read of x for the three)
    double rope = 2 * (qd + kvd), attn = qd + 2 * kvd + qd, o = qd + D, add_norm = 4 * D;  // x, branch in; x, normed out
    double gate_up = D + 2 * F, gated = 3 * F, down = F + D, lora = rank ? 14.0 * rank : 0;  // 7 adapters: x·Aᵀ out and back in
    return qkv + rope + attn + o + add_norm + gate_up + gated + down + add_norm + lora;
}

static double weight_bytes(const ModelConfig *c, LdDtype wt) {
    double D = c->dim, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    double per_layer = 2 * qd * D + 2 * kvd * D + 3 * F * D, e = wt == LD_BF16 ? 2 : 4;
    return e * (per_layer * c->n_layers + (double)c->vocab * D) + 4.0 * 2 * D * c->n_layers;  // linears, the head; norms in fp32
}

static double adapter_values(const ModelConfig *c, int rank) {
    double D = c->dim, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    return (double)rank * c->n_layers * ((D + qd) * 2 + 2 * (D + kvd) + 3 * (D + F));
}

// A LoRA training step over T tokens: the weights once, the adapter read, its gradient written and one fused AdamW
// (p, g, m, v in; p, m, v out: 36 bytes a parameter in all), the forward's activations once and the backward's
// twice as many (each op's backward reads its saved inputs and its output's gradient and writes its inputs'
// gradients), the head's input and its gradient.
static double ideal_train(const ModelConfig *c, int T, int rank, LdDtype wt, double act_bytes) {
    double fwd = ((double)T * (act_values_per_token(c, rank) * c->n_layers + 5.0 * c->dim)) * act_bytes;
    return weight_bytes(c, wt) + 36.0 * adapter_values(c, rank) + 3 * fwd;
}

// One decode step of B sequences at context ctx: the weights once, each sequence's keys and values once
// (kv_bytes per value), the B tokens' activations once, the logits written and read by the sampler.
static double ideal_decode(const ModelConfig *c, int B, double ctx, LdDtype wt, double act_bytes, double kv_bytes) {
    double kv = (double)B * ctx * 2.0 * c->n_kv_heads * c->head_dim * c->n_layers * kv_bytes;
    return weight_bytes(c, wt) + kv + B * (act_values_per_token(c, 0) * c->n_layers + 5.0 * c->dim) * act_bytes + 8.0 * B * c->vocab;
}

#define MAX_ROWS 256
typedef struct {
    EmuCount row[MAX_ROWS];
    char name[MAX_ROWS][64];  // the rows' names, kept: the counter's own go with emu_count_reset
    int n;
} Counts;

static void counts_take(Counts *c) {
    c->n = emu_count_rows(c->row, MAX_ROWS);
    if (c->n > MAX_ROWS) c->n = MAX_ROWS;
    for (int i = 0; i < c->n; i++) snprintf(c->name[i], sizeof c->name[i], "%s", c->row[i].name), c->row[i].name = c->name[i];
}

// after - before, every row divided by `per` (decode steps)
static void counts_diff(Counts *d, const Counts *after, const Counts *before, int per) {
    *d = *after;
    for (int i = 0; i < d->n; i++) d->row[i].name = d->name[i];
    for (int i = 0; i < d->n; i++) {
        for (int j = 0; j < before->n; j++)
            if (!strcmp(before->row[j].name, d->row[i].name)) {
                d->row[i].launches -= before->row[j].launches;
                d->row[i].read -= before->row[j].read, d->row[i].written -= before->row[j].written;
            }
        d->row[i].launches /= per, d->row[i].read /= per, d->row[i].written /= per;
    }
}

// The per-kernel table, then one JSON line with the totals and the two ideals (fp32 and bf16 activations).
static void counts_print(const Counts *c, const char *what, const char *precision, long ideal_n, double ideal_fp32, double ideal_bf16) {
    long launches = 0;
    double read = 0, written = 0;
    printf("%-34s %9s %12s %12s\n", what, "launches", "read MB", "written MB");
    for (int i = 0; i < c->n; i++) {
        const EmuCount *r = &c->row[i];
        if (!r->launches && !r->read && !r->written) continue;
        printf("%-34s %9ld %12.2f %12.2f\n", r->name, r->launches, r->read / 1e6, r->written / 1e6);
        int transfer = !strcmp(r->name, "upload") || !strcmp(r->name, "download");  // host traffic, not the device's
        if (!transfer) launches += r->launches, read += r->read, written += r->written;
    }
    printf(
        "{\"count\": \"%s\", \"precision\": \"%s\", \"launches\": %ld, \"ideal_launches\": %ld, \"read_MB\": %.2f, \"written_MB\": %.2f, "
        "\"total_MB\": %.2f, "
        "\"ideal_MB_fp32_acts\": %.2f, \"ideal_MB_bf16_acts\": %.2f, \"over_ideal_fp32\": %.2f, \"over_ideal_bf16\": %.2f}\n",
        what, precision, launches, ideal_n, read / 1e6, written / 1e6, (read + written) / 1e6, ideal_fp32 / 1e6, ideal_bf16 / 1e6,
        (read + written) / ideal_fp32, (read + written) / ideal_bf16);
}
#endif

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
    gpu_trainer_recompute(g, g_recompute);
    double t0 = 0;
    float loss = 0;
    for (int i = 0; i < warm + steps; i++) {
        if (i == warm) t0 = ld_time_s();
#ifdef BENCH_GPU_EMU
        if (g_count && i == warm + steps - 1) emu_count_reset();  // the last step alone
#endif
        gpu_trainer_zero_grad(g);
        loss = gpu_trainer_loss_and_grad(g, &tb, &c, 1, 0);
        if (loss != loss) fail("training step");
        gpu_trainer_adamw(g, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f);  // reads the gradient norm back: the step is done
    }
    double dt = (ld_time_s() - t0) / steps;
#ifdef BENCH_GPU_EMU
    if (g_count) {
        Counts c;
        counts_take(&c);
        counts_print(&c, "train step", wt == LD_BF16 ? "bf16" : "fp32", ideal_launches(&m->cfg, 1), ideal_train(&m->cfg, T, rank, wt, 4),
                     ideal_train(&m->cfg, T, rank, wt, 2));
    }
#endif
    size_t peak;
    kc_mem_stats(NULL, &peak);
    printf(
        "{\"engine\": \"llamaduo\", \"workload\": \"train\", \"precision\": \"%s\", \"seq\": %d, \"bsz\": %d, \"rank\": %d, \"steps\": %d, "
        "\"recompute\": %d, \"tok_per_s\": %.0f, \"step_s\": %.4f, \"peak_mem_GiB\": %.3f, \"loss\": %.4f}\n",
        wt == LD_BF16 ? "bf16" : "fp32", seq, batch, rank, steps, g_recompute, T / dt, dt, peak / 1073741824.0, loss);
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

static void bench_generate(Model *m, int batch, int plen, int nnew, int ctx_len, LdDtype wt) {
    ctx_len = ctx_len > plen + nnew ? ctx_len : plen + nnew;
    GenEngine *e = gen_engine_new(m, batch, ctx_len, 512, 1, wt == LD_BF16);
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
#ifdef BENCH_GPU_EMU
    if (g_count) {  // a decode step: the traffic of nnew tokens less that of half as many, per token
        int half = nnew / 2;
        Counts before, after, step;
        for (int i = 0; i < batch; i++) gen_seq_free(&seqs[i]), seqs[i].max_new_tokens = half;
        emu_count_reset();
        run_batch(e, seqs, batch);
        counts_take(&before);
        for (int i = 0; i < batch; i++) gen_seq_free(&seqs[i]), seqs[i].max_new_tokens = nnew;
        emu_count_reset();
        run_batch(e, seqs, batch);
        counts_take(&after);
        counts_diff(&step, &after, &before, nnew - half);
        double ctx = plen + (half + nnew) / 2.0;  // the steps' mean context
        counts_print(&step, "decode step", wt == LD_BF16 ? "bf16" : "fp32", ideal_launches(&m->cfg, 0),
                     ideal_decode(&m->cfg, batch, ctx, wt, 4, 4), ideal_decode(&m->cfg, batch, ctx, wt, 2, 2));
        for (int i = 0; i < batch; i++) gen_seq_free(&seqs[i]);
        gen_engine_free(e);
        free(prompts), free(seqs);
        return;
    }
#endif
    double t0 = ld_time_s();
    run_batch(e, seqs, batch);
    double dt = ld_time_s() - t0;
    long made = 0;
    for (int i = 0; i < batch; i++) made += seqs[i].n_tokens, gen_seq_free(&seqs[i]);
    size_t peak;
    kc_mem_stats(NULL, &peak);
    printf(
        "{\"engine\": \"llamaduo\", \"workload\": \"generate\", \"precision\": \"%s\", \"bsz\": %d, \"prompt\": %d, \"new\": %d, "
        "\"ctx\": %d, \"out_tok_per_s\": %.0f, \"s\": %.2f, \"tokens\": %ld, \"peak_mem_GiB\": %.3f}\n",
        wt == LD_BF16 ? "bf16" : "fp32", batch, plen, nnew, ctx_len, made / dt, dt, made, peak / 1073741824.0);
    gen_engine_free(e);
    free(prompts), free(seqs);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr,
                "usage: bench_gpu MODEL train SEQ BATCH [--steps N] [--warmup N] [--rank R] [--precision fp32|bf16] [--recompute 1] "
                "[--count 1]\n"
                "       bench_gpu MODEL generate BATCH PROMPT NEW [--precision fp32|bf16] [--ctx N] [--count 1]\n");
        return 2;
    }
    if (ld_cuda_device_count() == 0) {
        fprintf(stderr, "bench_gpu: no CUDA device\n");
        return 1;
    }
    int steps = 8, warm = 3, rank = 16, ctx_len = 0, train = !strcmp(argv[2], "train"), first_opt = train ? 5 : 6;
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
        else if (!strcmp(argv[i], "--ctx"))
            ctx_len = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--recompute"))
            g_recompute = !strcmp(argv[i + 1], "1");
        else if (!strcmp(argv[i], "--count") && !strcmp(argv[i + 1], "1"))
            g_count = 1;
        else {
            fprintf(stderr, "bench_gpu: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (g_count) {
#ifdef BENCH_GPU_EMU
        if (emu_count_enable()) return 1;
#else
        fprintf(stderr, "bench_gpu: --count needs bench_gpu_emu, the build against the CUDA emulator\n");
        return 2;
#endif
    }
    Model *m = model_load(argv[1]);
    if (!m) fail(argv[1]);
    if (train)
        bench_train(m, atoi(argv[3]), atoi(argv[4]), steps, warm, rank, wt);
    else if (argc >= 6 && !strcmp(argv[2], "generate"))
        bench_generate(m, atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), ctx_len, wt);
    else {
        fprintf(stderr, "bench_gpu: the workload is train or generate, not '%s'\n", argv[2]);
        return 2;
    }
    model_free(m);
    return 0;
}
