// LoRA loss and gradients through the whole model against HF transformers + PEFT (fp32) on the tiny models
// of every architecture, with completion-only targets and two packed records (fixtures:
// tools/make_train_fixtures.py).
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "backprop.h"
#include "export.h"
#include "forward.h"
#include "lora.h"
#include "optim.h"
#include "safetensors.h"
#include "test_util.h"
#include "util.h"

static const TensorRef *need(const SafeTensors *st, const char *name) {
    const TensorRef *t = st_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture lacks %s\n", name);
        exit(2);
    }
    return t;
}

static int *ints(const SafeTensors *st, const char *name, int *n) {
    const TensorRef *t = need(st, name);
    *n = (int)ld_tensor_numel(t);
    int *v = ld_xmalloc(sizeof(int) * (size_t)*n);
    memcpy(v, t->data, sizeof(int) * (size_t)*n);
    return v;
}

static double rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static void read_batch(const SafeTensors *st, TrainBatch *b) {
    int nt, ng, np, ns;
    b->tokens = ints(st, "tokens", &nt);
    b->targets = ints(st, "targets", &ng);
    b->positions = ints(st, "positions", &np);
    b->starts = ints(st, "starts", &ns);
    *b = (TrainBatch){b->tokens, b->targets, b->positions, b->starts, nt, ns, 0, 0};
}

// The fixture's rank-4 adapter (PEFT's values) into l.
static void load_lora(Lora *l, const SafeTensors *st) {
    char p[256];
    for (int i = 0; i < l->n_layers * LT_COUNT; i++) {
        LoraPair *w = &l->w[i];
        snprintf(p, sizeof p, "lora.%d.%s.A", i / LT_COUNT, lora_target_name((LoraTarget)(i % LT_COUNT)));
        memcpy(w->A, need(st, p)->data, sizeof(float) * 4 * (size_t)w->in);
        snprintf(p, sizeof p, "lora.%d.%s.B", i / LT_COUNT, lora_target_name((LoraTarget)(i % LT_COUNT)));
        memcpy(w->B, need(st, p)->data, sizeof(float) * 4 * (size_t)w->out);
    }
}

static void check(const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tiny/%s", LD_FIXTURES, name);
    Model *m = model_load(p);
    CHECK(m != NULL, "%s: %s", name, ld_last_error());
    if (!m) return;
    snprintf(p, sizeof p, "%s/train/%s.safetensors", LD_FIXTURES, name);
    SafeTensors st;
    if (st_open(p, &st)) {
        CHECK(0, "%s", ld_last_error());
        return;
    }
    Lora *lora = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1), *grad = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1);
    load_lora(lora, &st);
    TrainBatch b;
    int counted;
    read_batch(&st, &b);
    float loss = train_loss_and_grad(m, lora, grad, NULL, &b, &counted, 0);
    float want = *(const float *)need(&st, "loss")->data;
    double worst = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < LT_COUNT; t++) {
            LoraPair *g = &grad->w[l * LT_COUNT + t];
            snprintf(p, sizeof p, "grad.%d.%s.A", l, lora_target_name((LoraTarget)t));
            double ea = rel(g->A, (const float *)need(&st, p)->data, 4 * (size_t)g->in);
            snprintf(p, sizeof p, "grad.%d.%s.B", l, lora_target_name((LoraTarget)t));
            double eb = rel(g->B, (const float *)need(&st, p)->data, 4 * (size_t)g->out);
            if (ea > worst) worst = ea;
            if (eb > worst) worst = eb;
            CHECK(ea < 1e-4 && eb < 1e-4, "%s layer %d %s: gradient rel err A %.2e B %.2e", name, l, lora_target_name((LoraTarget)t), ea,
                  eb);
        }
    printf("%-12s loss %.6f (PEFT %.6f, %d targets); worst LoRA gradient rel err %.2e\n", name, loss, want, counted, worst);
    CHECK(fabsf(loss - want) / want < 1e-5, "%s: loss %.7f vs PEFT %.7f", name, loss, want);
    // ten AdamW steps with clipping track torch's loss sequence
    const float *want_losses = (const float *)need(&st, "adamw_losses")->data;
    Param *ps;
    int nps = lora_params(lora, grad, &ps);
    AdamW *opt = adamw_new(ps, nps);
    double worst_step = 0;
    for (int step = 0; step < 10; step++) {
        adamw_zero_grad(opt);
        float l = train_loss_and_grad(m, lora, grad, NULL, &b, &counted, 0);
        double e = fabs(l - want_losses[step]) / want_losses[step];
        if (e > worst_step) worst_step = e;
        adamw_step(opt, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f);
    }
    printf("%-12s 10 AdamW steps: loss %.5f -> %.5f, worst rel diff from torch %.2e\n", name, want_losses[0], want_losses[9], worst_step);
    CHECK(worst_step < 1e-4, "%s: AdamW loss sequence differs from torch (%.3e)", name, worst_step);
    adamw_free(opt);
    free((void *)b.tokens), free((void *)b.targets), free((void *)b.positions), free((void *)b.starts);
    lora_free(lora), lora_free(grad);
    st_close(&st);
    model_free(m);
}

// The tiny model `name` made trainable (every weight fp32) and its training fixture open in *st; NULL (the check
// failed) when either cannot be read.
static Model *trainable_fixture(const char *name, SafeTensors *st) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tiny/%s", LD_FIXTURES, name);
    Model *m = model_load(p);
    snprintf(p, sizeof p, "%s/train/%s.safetensors", LD_FIXTURES, name);
    if (!m || st_open(p, st)) {
        CHECK(0, "%s: %s", name, ld_last_error());
        model_free(m);
        return NULL;
    }
    model_make_trainable(m);
    return m;
}

static void free_batch(TrainBatch *b) {
    free((void *)b->tokens), free((void *)b->targets), free((void *)b->positions), free((void *)b->starts);
}

// Full fine-tuning: the gradient of every weight against HF's, then ten AdamW steps (decay on matrices only).
static void check_full(const char *name) {
    char p[1024];
    SafeTensors st;
    Model *m = trainable_fixture(name, &st);
    if (!m) return;
    Model *g = model_grad_new(m);
    TrainBatch b;
    read_batch(&st, &b);
    int counted;
    float loss = train_loss_and_grad(m, NULL, NULL, g, &b, &counted, 0), want = *(const float *)need(&st, "full.loss")->data;
    Param *ps;
    int n = model_params(m, g, &ps);
    double worst = 0;
    int compared = 0;
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "full.grad.%s", ps[i].name);
        const TensorRef *t = need(&st, p);
        CHECK(t->nbytes == sizeof(float) * ps[i].n, "%s: %s has %zu elements, HF's %zu", name, ps[i].name, ps[i].n, t->nbytes / 4);
        if (t->nbytes != sizeof(float) * ps[i].n) continue;
        double e = rel(ps[i].g, (const float *)t->data, ps[i].n);
        if (e > worst) worst = e;
        compared++;
        CHECK(e < 1e-4, "%s: full fine-tuning gradient of %s rel err %.2e", name, ps[i].name, e);
    }
    int hf_count = 0;  // every HF parameter has a counterpart
    for (int i = 0; i < st.n_tensors; i++) hf_count += !strncmp(st.tensors[i].name, "full.grad.", 10);
    CHECK(hf_count == n, "%s: HF has %d parameters, llamaduo trains %d", name, hf_count, n);
    printf("%-12s full fine-tuning: loss %.6f (HF %.6f); %d weight gradients, worst rel err %.2e\n", name, loss, want, compared, worst);
    CHECK(fabsf(loss - want) / want < 1e-5, "%s: full fine-tuning loss %.7f vs HF %.7f", name, loss, want);
    const float *want_losses = (const float *)need(&st, "full.adamw_losses")->data;
    AdamW *opt = adamw_new(ps, n);
    double worst_step = 0;
    for (int step = 0; step < 10; step++) {
        adamw_zero_grad(opt);
        float l = train_loss_and_grad(m, NULL, NULL, g, &b, &counted, 0);
        double e = fabs(l - want_losses[step]) / want_losses[step];
        if (e > worst_step) worst_step = e;
        adamw_step(opt, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f);
    }
    printf("%-12s full fine-tuning, 10 AdamW steps: loss %.5f -> %.5f, worst rel diff from torch %.2e\n", name, want_losses[0],
           want_losses[9], worst_step);
    CHECK(worst_step < 1e-4, "%s: full fine-tuning AdamW losses differ from torch (%.3e)", name, worst_step);
    adamw_free(opt);
    free_batch(&b);
    st_close(&st);
    model_free(g), model_free(m);
}

// The backward pass's promise to the GPU ranks' overlap (TrainStep.grads_final): it names the stages in order —
// the head (n_layers), each block from the last, the embedding (-1) — and once a parameter's stage (Param.layer)
// is named, its gradient never changes again, so a bucket sent then is the one the optimiser steps on.
typedef struct {
    Param *ps;
    int n, L, calls, in_order, stop_at;  // stop_at: the stage whose call fails (-2: none)
    float **seen;  // [n] each gradient as it was when its stage was named
} FinalLog;

static int log_final(void *ctx, int layer) {
    FinalLog *f = ctx;
    f->in_order &= layer == f->L - f->calls++;
    for (int i = 0; i < f->n; i++)
        if (f->ps[i].layer == layer) {
            f->seen[i] = ld_xmalloc(sizeof(float) * f->ps[i].n);
            memcpy(f->seen[i], f->ps[i].g, sizeof(float) * f->ps[i].n);
        }
    return layer == f->stop_at ? -1 : 0;
}

// One training pass of LoRA (dropout on) and every weight at once, with the log; 0, or -1 when the pass failed.
static int logged_pass(Model *m, Lora *lora, Lora *lg, Model *mg, const TrainBatch *b, FinalLog *f) {
    const Backend *be = &ld_backend_cpu;
    Transformer t = {.be = be, .cfg = &m->cfg, .w = model_weights(m), .adapter = lora};
    ModelWeights gw = model_weights(mg);
    TrainStep step = {
        .adapter_grad = lg, .weight_grad = &gw, .dropout = 0.2f, .dropout_seed = 7, .grads_final = log_final, .grads_final_ctx = f};
    TokenPlan plan;
    float loss;
    int counted, rc = token_plan_packed(be, &m->cfg, b, &plan) || transformer_loss(&t, &plan, b->targets, &step, &loss, &counted);
    token_plan_free(be, &plan);
    return rc ? -1 : 0;
}

static void check_grads_final(const char *name) {
    SafeTensors st;
    Model *m = trainable_fixture(name, &st);
    if (!m) return;
    Model *mg = model_grad_new(m);
    Lora *lora = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1), *lg = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1);
    load_lora(lora, &st);
    TrainBatch b;
    read_batch(&st, &b);
    Param *lp, *mp;
    int nl = lora_params(lora, lg, &lp), nm = model_params(m, mg, &mp), L = m->cfg.n_layers;
    FinalLog f = {.ps = ld_xmalloc(sizeof(Param) * (size_t)(nl + nm)), .n = nl + nm, .L = L, .in_order = 1, .stop_at = -2};
    memcpy(f.ps, lp, sizeof(Param) * (size_t)nl), memcpy(f.ps + nl, mp, sizeof(Param) * (size_t)nm);
    f.seen = ld_xcalloc((size_t)f.n, sizeof(float *));
    CHECK(logged_pass(m, lora, lg, mg, &b, &f) == 0, "%s: %s", name, ld_last_error());
    CHECK(f.calls == L + 2 && f.in_order, "%s: %d stages named (%s), not %d in order", name, f.calls,
          f.in_order ? "in order" : "out of order", L + 2);
    int changed = 0, unseen = 0, nonzero = 0;
    for (int i = 0; i < f.n; i++) {
        if (!f.seen[i]) {
            unseen++;
            continue;
        }
        changed += memcmp(f.seen[i], f.ps[i].g, sizeof(float) * f.ps[i].n) != 0;
        for (size_t k = 0; k < f.ps[i].n && !nonzero; k++) nonzero = f.ps[i].g[k] != 0;
        free(f.seen[i]);
    }
    printf("%-12s backward pass: %d stages named in order; %d gradients, %d changed after their stage, %d never named\n", name, f.calls,
           f.n, changed, unseen);
    CHECK(!changed && !unseen && nonzero, "%s: %d gradients changed after their stage was named, %d never named", name, changed, unseen);
    // a failing call ends the pass with its error
    FinalLog stop = {.ps = f.ps, .n = f.n, .L = L, .in_order = 1, .stop_at = L - 1, .seen = f.seen};
    memset(f.seen, 0, sizeof(float *) * (size_t)f.n);
    CHECK(logged_pass(m, lora, lg, mg, &b, &stop) == -1 && stop.calls == 2, "%s: a failing grads_final did not end the pass (%d calls)",
          name, stop.calls);
    for (int i = 0; i < f.n; i++) free(f.seen[i]);
    free(f.seen), free(f.ps), free(lp), free(mp);
    free_batch(&b);
    lora_free(lora), lora_free(lg);
    st_close(&st);
    model_free(mg), model_free(m);
}

// Activation checkpointing (recompute): the loss and every gradient, LoRA's (dropout on) and every weight's at once,
// as without it. The blocks run again from their kept inputs, so the only difference allowed is the rounding of a
// normed input computed on its own instead of fused with the residual add.
static void check_recompute(const char *name) {
    SafeTensors st;
    Model *m = trainable_fixture(name, &st);
    if (!m) return;
    Model *mg[2] = {model_grad_new(m), model_grad_new(m)};
    Lora *lora = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1), *lg[2];
    load_lora(lora, &st);
    lora->dropout = 0.2f, lora->dropout_seed = 99;
    TrainBatch b;
    read_batch(&st, &b);
    float loss[2];
    Param *ps[2], *ms[2];
    int nl = 0, nm = 0, counted;
    for (int r = 0; r < 2; r++) {
        lg[r] = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1);
        loss[r] = train_loss_and_grad(m, lora, lg[r], mg[r], &b, &counted, r);
        nl = lora_params(lora, lg[r], &ps[r]), nm = model_params(m, mg[r], &ms[r]);
    }
    double worst = fabs(loss[1] - loss[0]) / fabs(loss[0]);
    for (int i = 0; i < nl; i++) worst = fmax(worst, rel(ps[1][i].g, ps[0][i].g, ps[0][i].n));
    for (int i = 0; i < nm; i++) worst = fmax(worst, rel(ms[1][i].g, ms[0][i].g, ms[0][i].n));
    printf("%-12s activation checkpointing: loss %.6f (without %.6f); %d gradients, worst rel diff %.2e\n", name, loss[1], loss[0], nl + nm,
           worst);
    CHECK(worst < 1e-6, "%s: activation checkpointing changed the loss or a gradient by %.2e", name, worst);
    for (int r = 0; r < 2; r++) free(ps[r]), free(ms[r]), lora_free(lg[r]), model_free(mg[r]);
    free_batch(&b);
    lora_free(lora);
    st_close(&st);
    model_free(m);
}

// rsLoRA (scale alpha/sqrt(r)) against PEFT's use_rslora.
static void check_rslora(void) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tiny/llama", LD_FIXTURES);
    Model *m = model_load(p);
    snprintf(p, sizeof p, "%s/train/llama.safetensors", LD_FIXTURES);
    SafeTensors st;
    if (!m || st_open(p, &st)) {
        CHECK(0, "rslora: %s", ld_last_error());
        model_free(m);
        return;
    }
    Lora *l = lora_new(&m->cfg, 4, 8.0f, 1, (1u << LT_COUNT) - 1), *g = lora_new(&m->cfg, 4, 8.0f, 1, (1u << LT_COUNT) - 1);
    CHECK(l->scale == 4.0f, "rsLoRA scale %g, want alpha/sqrt(r) = 4", l->scale);
    double worst = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->cfg.n_layers * LT_COUNT; i++) {
            LoraPair *w = pass ? &g->w[i] : &l->w[i];
            for (int ab = 0; ab < 2; ab++) {
                snprintf(p, sizeof p, "%s.%d.%s.%c", pass ? "rs.grad" : "lora", i / LT_COUNT, lora_target_name((LoraTarget)(i % LT_COUNT)),
                         ab ? 'B' : 'A');
                const float *ref = (const float *)need(&st, p)->data;
                size_t n = 4 * (size_t)(ab ? w->out : w->in);
                if (!pass) {
                    memcpy(ab ? w->B : w->A, ref, sizeof(float) * n);
                    continue;
                }
                double e = rel(ab ? w->B : w->A, ref, n);
                if (e > worst) worst = e;
            }
            if (!pass && i == m->cfg.n_layers * LT_COUNT - 1) {
                TrainBatch b;
                int counted;
                read_batch(&st, &b);
                float loss = train_loss_and_grad(m, l, g, NULL, &b, &counted, 0), want = *(const float *)need(&st, "rs.loss")->data;
                CHECK(fabsf(loss - want) / want < 1e-5, "rsLoRA loss %.7f vs PEFT %.7f", loss, want);
                printf("rsLoRA       loss %.6f (PEFT %.6f)", loss, want);
                free_batch(&b);
            }
        }
    printf("; worst gradient rel err %.2e\n", worst);
    CHECK(worst < 1e-4, "rsLoRA gradients differ from PEFT's: %.3e", worst);
    lora_free(l), lora_free(g);
    st_close(&st);
    model_free(m);
}

// PEFT's own adapter directory loads, gives PEFT's logits without merging, and what we write has PEFT's
// names, shapes and config and reads back identically.
static void check_adapter_files(void) {
    char p[2200], dir[1024];
    snprintf(p, sizeof p, "%s/tiny/llama", LD_FIXTURES);
    Model *m = model_load(p);
    snprintf(dir, sizeof dir, "%s/train/llama_peft_adapter", LD_FIXTURES);
    Lora *a = m ? lora_load_peft(&m->cfg, dir) : NULL;
    CHECK(a != NULL, "PEFT adapter did not load: %s", ld_last_error());
    if (!a) return;
    snprintf(p, sizeof p, "%s/train/llama.safetensors", LD_FIXTURES);
    SafeTensors fx;
    st_open(p, &fx);
    int same = 1;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < LT_COUNT; t++) {
            snprintf(p, sizeof p, "lora.%d.%s.A", l, lora_target_name((LoraTarget)t));
            same &= !memcmp(a->w[l * LT_COUNT + t].A, need(&fx, p)->data, sizeof(float) * 4 * (size_t)a->w[l * LT_COUNT + t].in);
        }
    CHECK(same && a->rank == 4 && a->scale == 2.0f, "adapter values or scale differ from PEFT's");
    // logits with the adapter applied on the fly, against PEFT's
    int nt, ns;
    int *tokens = ints(&fx, "tokens", &nt), *starts = ints(&fx, "starts", &ns);
    int T = starts[1], V = m->cfg.vocab;
    m->adapter = a;
    KVCache *kv = kv_new(&m->cfg, 1, T);
    int *slot = ld_xcalloc((size_t)T, sizeof(int)), *pos = ld_xmalloc(sizeof(int) * (size_t)T);
    for (int i = 0; i < T; i++) pos[i] = i;
    float *lg = ld_xmalloc(sizeof(float) * (size_t)T * V);
    model_forward(m, kv, tokens, slot, pos, T, NULL, lg);
    double e = rel(lg, (const float *)need(&fx, "peft_logits")->data, (size_t)T * V);
    printf("adapter from PEFT's directory: logits vs PEFT rel err %.2e\n", e);
    CHECK(e < 1e-4, "logits with the adapter differ from PEFT's: %.3e", e);
    // our files: PEFT's tensor names and shapes, and a faithful round trip
    char out[256];
    snprintf(out, sizeof out, "/tmp/llamaduo-adapter-%d", (int)getpid());
    CHECK(lora_save_peft(a, out, p) == 0, "save: %s", ld_last_error());
    SafeTensors ours, theirs;
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", out);
    st_open(p, &ours);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    st_open(p, &theirs);
    int names_ok = ours.n_tensors == theirs.n_tensors;
    for (int i = 0; i < theirs.n_tensors && names_ok; i++) {
        const TensorRef *o = st_find(&ours, theirs.tensors[i].name);
        names_ok = o && o->n_dims == 2 && o->shape[0] == theirs.tensors[i].shape[0] && o->shape[1] == theirs.tensors[i].shape[1] &&
                   o->dtype == theirs.tensors[i].dtype && !memcmp(o->data, theirs.tensors[i].data, o->nbytes);
    }
    CHECK(names_ok, "our adapter_model.safetensors differs from PEFT's in names, shapes, types or values");
    // the adapter merged into the weights and written as an HF directory: loads, and gives PEFT's logits
    char merged_dir[300];
    snprintf(merged_dir, sizeof merged_dir, "%s-merged", out);
    int n_t, n_m;
    snprintf(p, sizeof p, "%s/tiny/llama", LD_FIXTURES);
    CHECK(export_hf(m, a, merged_dir, &n_t, &n_m) == 0 && n_m == 14, "export: %s", ld_last_error());
    Model *mm = model_load(merged_dir);
    CHECK(mm != NULL, "merged export does not load: %s", ld_last_error());
    if (mm) {
        KVCache *kv2 = kv_new(&mm->cfg, 1, T);
        float *lg2 = ld_xmalloc(sizeof(float) * (size_t)T * V);
        model_forward(mm, kv2, tokens, slot, pos, T, NULL, lg2);
        double em = rel(lg2, (const float *)need(&fx, "peft_logits")->data, (size_t)T * V);
        printf("merged HF export: logits vs PEFT rel err %.2e\n", em);
        CHECK(em < 1e-4, "merged export's logits differ from PEFT's: %.3e", em);
        free(lg2);
        kv_free(kv2);
        model_free(mm);
    }
    snprintf(p, sizeof p, "rm -rf %s", merged_dir);
    if (system(p)) fprintf(stderr, "could not remove %s\n", merged_dir);
    Lora *back = lora_load_peft(&m->cfg, out);
    CHECK(back && back->rank == a->rank && back->scale == a->scale, "round trip of our adapter: %s", ld_last_error());
    snprintf(p, sizeof p, "rm -rf %s", out);
    if (system(p)) fprintf(stderr, "could not remove %s\n", out);
    // a broken adapter is refused with the file named
    CHECK(lora_load_peft(&m->cfg, "/nonexistent-adapter") == NULL && strstr(ld_last_error(), "adapter_config.json"), "missing adapter: %s",
          ld_last_error());
    lora_free(back);
    st_close(&ours), st_close(&theirs), st_close(&fx);
    free(tokens), free(starts), free(slot), free(pos), free(lg);
    kv_free(kv);
    model_free(m);  // frees its adapter, a
}

// Data parallelism's contract: a packed batch cut between records into two shares, each dividing by the whole's
// count (loss_norm) and masking from its row in the whole (row0), gives the whole's loss and gradients as their
// sums — dropout on. `whole` holds the whole batch's gradients under l's dropout.
static void check_split_shares(Model *m, Lora *l, const Lora *whole, const TrainBatch *b) {
    int c, c1, c2, k = b->n_records / 2, s = b->starts[k], *starts2 = malloc(sizeof(int) * (size_t)(b->n_records - k));
    CHECK(k > 0 && s > 0, "the fixture has too few records to split");
    for (int i = k; i < b->n_records; i++) starts2[i - k] = b->starts[i] - s;
    Lora *g = lora_new(&m->cfg, l->rank, 8.0f, 0, (1u << LT_COUNT) - 1), *scratch = lora_new(&m->cfg, l->rank, 8.0f, 0, (1u << LT_COUNT) - 1);
    float loss = train_loss_and_grad(m, l, scratch, NULL, b, &c, 0);
    TrainBatch b1 = {b->tokens, b->targets, b->positions, b->starts, s, k, 0, c};
    TrainBatch b2 = {b->tokens + s, b->targets + s, b->positions + s, starts2, b->T - s, b->n_records - k, s, c};
    float sum = train_loss_and_grad(m, l, g, NULL, &b1, &c1, 0) + train_loss_and_grad(m, l, g, NULL, &b2, &c2, 0);
    double worst = 0;
    for (int i = 0; i < m->cfg.n_layers * LT_COUNT; i++) {
        const LoraPair *p = &g->w[i], *q = &whole->w[i];
        double ea = rel(p->A, q->A, (size_t)l->rank * p->in), eb = rel(p->B, q->B, (size_t)l->rank * p->out);
        worst = fmax(worst, fmax(ea, eb));
    }
    printf("two shares of a batch (dropout %.1f): loss %.6f vs %.6f, gradients rel err %.1e\n", l->dropout, sum, loss, worst);
    CHECK(c1 + c2 == c && fabsf(sum - loss) <= 1e-5f * loss, "two shares' losses add to %g, the whole's is %g", sum, loss);
    CHECK(worst < 1e-5, "two shares' gradients differ from the whole's by %.2e", worst);
    lora_free(g), lora_free(scratch);
    free(starts2);
}

// LoRA dropout: the masked loss's gradient against central differences of the same masked loss, through the
// whole model (the masks are a function of the seed, so every evaluation sees the same ones).
static void check_dropout(void) {
    char p[1100];
    snprintf(p, sizeof p, "%s/tiny/llama", LD_FIXTURES);
    Model *m = model_load(p);
    snprintf(p, sizeof p, "%s/train/llama.safetensors", LD_FIXTURES);
    SafeTensors st;
    st_open(p, &st);
    Lora *l = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1), *g = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1),
         *scratch = lora_new(&m->cfg, 4, 8.0f, 0, (1u << LT_COUNT) - 1);
    load_lora(l, &st);
    int nt, ng, np, ns, c;
    TrainBatch b = {ints(&st, "tokens", &nt), ints(&st, "targets", &ng), ints(&st, "positions", &np), ints(&st, "starts", &ns), 0, 0};
    b.T = nt, b.n_records = ns;
    float plain = train_loss_and_grad(m, l, scratch, NULL, &b, &c, 0);
    l->dropout = 0.3f, l->dropout_seed = 12345;
    float base = train_loss_and_grad(m, l, g, NULL, &b, &c, 0);
    CHECK(fabsf(base - plain) > 1e-4f, "dropout did not change the training loss (%f vs %f)", base, plain);
    CHECK(fabsf(train_loss_and_grad(m, l, NULL, NULL, &b, &c, 0) - plain) < 1e-6f, "evaluation must not drop");
    struct {
        int layer, target, b, idx;
    } probes[] = {{0, LT_Q, 0, 5}, {1, LT_DOWN, 0, 17}, {0, LT_UP, 1, 30}, {1, LT_V, 1, 3}, {1, LT_GATE, 0, 100}};
    double worst = 0;
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        LoraPair *w = &l->w[probes[k].layer * LT_COUNT + probes[k].target], *gw = &g->w[probes[k].layer * LT_COUNT + probes[k].target];
        float *x = probes[k].b ? &w->B[probes[k].idx] : &w->A[probes[k].idx], keep = *x, h = 1e-2f;
        float an = probes[k].b ? gw->B[probes[k].idx] : gw->A[probes[k].idx];
        *x = keep + h;
        float lp = train_loss_and_grad(m, l, scratch, NULL, &b, &c, 0);
        *x = keep - h;
        float lm = train_loss_and_grad(m, l, scratch, NULL, &b, &c, 0);
        *x = keep;
        double fd = (lp - lm) / (2 * h), e = fabs(fd - an) / fmax(fabs(fd), 1e-3);
        if (e > worst) worst = e;
    }
    printf("LoRA dropout 0.3: loss %.5f (without %.5f); gradient vs finite differences worst rel err %.2e\n", base, plain, worst);
    CHECK(worst < 2e-2, "dropout gradient differs from finite differences: %.3e", worst);
    check_split_shares(m, l, g, &b);
    free((void *)b.tokens), free((void *)b.targets), free((void *)b.positions), free((void *)b.starts);
    lora_free(l), lora_free(g), lora_free(scratch);
    st_close(&st);
    model_free(m);
}

int main(void) {
    check_adapter_files();
    check_dropout();
    const char *models[] = {"llama", "llama3_rope", "qwen2", "gemma", "gemma2", "gemma3", "llama_gelu", "gemma_gelu"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) check(models[i]);
    check_rslora();
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) check_recompute(models[i]);
    check_grads_final("llama");  // an untied head: its gradient final before the blocks
    check_grads_final("gemma");  // tied: the embedding's gradient takes the head's and is final last
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) check_full(models[i]);
    return test_finish("test_lora_grad");
}
