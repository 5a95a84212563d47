#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "forward_gpu.h"
#include "kernels.h"
#include "util.h"

GenParams gen_defaults(void) {
    return (GenParams){.max_new_tokens = 256, .sampler = sampler_defaults(), .max_batch = 16, .prefill_chunk = 512};
}

int gen_default_stop_ids(const Model *m, int *ids, int cap) {
    static const char *eot[] = {"<|eot_id|>",    "<|im_end|>", "<end_of_turn>", "<|end_of_text|>",
                                "<|endoftext|>", "</s>",       "<eos>",         "<|eom_id|>"};
    int n = 0;
    if (tok_eos(m->tok) >= 0 && n < cap) ids[n++] = tok_eos(m->tok);
    for (size_t i = 0; i < sizeof eot / sizeof eot[0]; i++) {
        int id = tok_find(m->tok, eot[i]);
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= ids[k] == id;
        if (id >= 0 && !dup && n < cap && tok_is_special(m->tok, id)) ids[n++] = id;
    }
    return n;
}

typedef struct {
    GenSeq *seq;  // NULL when the slot is free
    int n_fed;  // tokens of this sequence already in the cache
    int *hist;  // prompt + generated tokens
    int n_hist;
    char *bytes;  // generated text bytes
    size_t n_bytes, cap_bytes, n_streamed;
    uint64_t rng;
} Slot;

struct GenEngine {
    const Model *m;
    KVCache *kv;  // the CPU path's cache ...
    GpuModel *gpu;  // ... or the model and its cache on the GPU
    int n_slots, ctx_len, chunk, V;
    Slot *slots;
    int *tok, *sl, *ps, *owner;  // one forward call's batch
    uint8_t *want;
    float *logits;  // [n_slots, V]: the wanted rows on the host (on the GPU path, only rows the host decides)
    int *row_slot;  // [n_slots]: the slot of each wanted row
    int *picked;  // [n_slots]: each row's token (GPU path), -1 where a JSON constraint allows nothing
    KcSampleRow *sample_rows;
    char **tok_bytes;  // every token's text bytes (for stop strings and JSON constraints)
    int *tok_len;
    uint8_t *tok_text;  // 1 when the token is plain text (not special, not empty): the only ones JSON may use
};

static void slot_append_bytes(Slot *s, const char *b, int n) {
    if (s->n_bytes + (size_t)n + 1 > s->cap_bytes) s->bytes = ld_xrealloc(s->bytes, s->cap_bytes = (s->n_bytes + n + 1) * 2);
    memcpy(s->bytes + s->n_bytes, b, (size_t)n);
    s->n_bytes += (size_t)n;
    s->bytes[s->n_bytes] = 0;
}

// Earliest occurrence of any stop string in the text, searching only where a new match can be.
static long find_stop(const GenSeq *q, const char *s, size_t n, size_t from) {
    long best = -1;
    for (int i = 0; i < q->n_stop_strings; i++) {
        size_t L = strlen(q->stop_strings[i]);
        if (!L || L > n) continue;
        size_t start = from > L ? from - L : 0;
        for (size_t k = start; k + L <= n; k++)
            if (!memcmp(s + k, q->stop_strings[i], L)) {
                if (best < 0 || (long)k < best) best = (long)k;
                break;
            }
    }
    return best;
}

// Bytes at the end of the text that could still grow into a stop string: held back from the stream.
static size_t stop_holdback(const GenSeq *q, const char *s, size_t n) {
    size_t hold = 0;
    for (int i = 0; i < q->n_stop_strings; i++) {
        size_t L = strlen(q->stop_strings[i]);
        for (size_t k = L > n ? n : L - 1; k > hold; k--)
            if (!memcmp(s + n - k, q->stop_strings[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

// Bytes at the end that start a UTF-8 character not yet complete: held back so streamed text stays valid.
static size_t incomplete_utf8_tail(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

// Streams bytes [n_streamed, upto) as repaired UTF-8: the pieces concatenate to exactly the final text.
static void stream_upto(Slot *s, size_t upto) {
    GenSeq *q = s->seq;
    if (!q->on_text || upto <= s->n_streamed) return;
    size_t n;
    char *t = ld_utf8_repair(s->bytes + s->n_streamed, upto - s->n_streamed, &n);
    q->on_text(q->ctx, q, t, (int)n);
    free(t);
    s->n_streamed = upto;
}

// Ends the slot's sequence with text_len bytes of text; the slot is free afterwards, its KV pages (on the GPU)
// given back.
static void finish(GenEngine *e, Slot *s, FinishReason why, size_t text_len, int notify) {
    GenSeq *q = s->seq;
    if (why != FINISH_CANCELLED) stream_upto(s, text_len);
    q->text = ld_utf8_repair(s->bytes ? s->bytes : "", text_len, NULL);
    q->finish = why;
    s->seq = NULL;
    gpu_model_release(e->gpu, q->slot);
    q->slot = -1;
    if (notify && q->on_done) q->on_done(q->ctx, q);
}

GenEngine *gen_engine_new(const Model *m, int n_slots, int ctx_len, int prefill_chunk, int use_gpu, int gpu_bf16) {
    if (n_slots < 1) n_slots = 1;
    KVCache *kv = NULL;
    GpuModel *gpu = NULL;
    if (use_gpu ? !(gpu = gpu_model_new(m, n_slots, ctx_len, gpu_bf16 ? LD_BF16 : LD_F32)) : !(kv = kv_new(&m->cfg, n_slots, ctx_len)))
        return NULL;
    GenEngine *e = ld_xcalloc(1, sizeof *e);
    e->m = m, e->kv = kv, e->gpu = gpu, e->n_slots = n_slots, e->ctx_len = ctx_len, e->V = m->cfg.vocab;
    e->chunk = prefill_chunk > 0 ? prefill_chunk : 512;
    e->slots = ld_xcalloc((size_t)n_slots, sizeof(Slot));
    int cap = e->chunk + n_slots;
    e->tok = ld_xmalloc(sizeof(int) * cap), e->sl = ld_xmalloc(sizeof(int) * cap), e->ps = ld_xmalloc(sizeof(int) * cap);
    e->owner = ld_xmalloc(sizeof(int) * cap), e->want = ld_xmalloc((size_t)cap);
    e->logits = ld_xmalloc(sizeof(float) * (size_t)n_slots * e->V);
    e->row_slot = ld_xmalloc(sizeof(int) * (size_t)n_slots), e->picked = ld_xmalloc(sizeof(int) * (size_t)n_slots);
    e->sample_rows = ld_xcalloc((size_t)n_slots, sizeof(KcSampleRow));
    e->tok_bytes = ld_xcalloc((size_t)e->V, sizeof(char *));
    e->tok_len = ld_xcalloc((size_t)e->V, sizeof(int));
    e->tok_text = ld_xcalloc((size_t)e->V, 1);
    char piece[512];
    int nv = tok_vocab_size(m->tok);
    for (int t = 0; t < e->V; t++) {  // ids past the tokenizer's vocabulary (padding rows) have no text
        int n = t < nv ? tok_token_bytes(m->tok, t, piece, (int)sizeof piece) : 0;
        e->tok_len[t] = n;
        e->tok_text[t] = n > 0 && !tok_is_special(m->tok, t);
        e->tok_bytes[t] = ld_xmalloc((size_t)n + 1);
        memcpy(e->tok_bytes[t], piece, (size_t)n);
    }
    return e;
}

void gen_engine_free(GenEngine *e) {
    if (!e) return;
    for (int s = 0; s < e->n_slots; s++) free(e->slots[s].hist), free(e->slots[s].bytes);
    for (int t = 0; t < e->V; t++) free(e->tok_bytes[t]);
    free(e->tok_bytes), free(e->tok_len), free(e->tok_text);
    free(e->slots), free(e->tok), free(e->sl), free(e->ps), free(e->owner), free(e->want), free(e->logits);
    free(e->row_slot), free(e->picked), free(e->sample_rows);
    kv_free(e->kv);
    gpu_model_free(e->gpu);
    free(e);
}

int gen_engine_free_slots(const GenEngine *e) {
    int n = 0;
    for (int s = 0; s < e->n_slots; s++) n += !e->slots[s].seq;
    return n;
}

int gen_engine_active(const GenEngine *e) { return e->n_slots - gen_engine_free_slots(e); }

int gen_engine_add(GenEngine *e, GenSeq *q) {
    q->tokens = NULL, q->n_tokens = 0, q->text = NULL, q->finish = FINISH_NONE, q->slot = -1;
    if (q->n_prompt <= 0) {
        ld_set_error("empty prompt");
        return -1;
    }
    if ((long)q->n_prompt + q->max_new_tokens > e->ctx_len) {
        ld_set_error("a prompt of %d tokens plus %d new tokens exceeds the context of %d", q->n_prompt, q->max_new_tokens, e->ctx_len);
        return -1;
    }
    int s = 0;
    while (s < e->n_slots && e->slots[s].seq) s++;
    if (s == e->n_slots) {
        ld_set_error("no free sequence slot");
        return -1;
    }
    Slot *x = &e->slots[s];
    x->seq = q, q->slot = s;
    x->n_fed = 0;
    x->hist = ld_xrealloc(x->hist, sizeof(int) * (size_t)(q->n_prompt + q->max_new_tokens + 1));
    memcpy(x->hist, q->prompt, sizeof(int) * (size_t)q->n_prompt);
    x->n_hist = q->n_prompt;
    x->n_bytes = x->n_streamed = 0;
    x->rng = sampler_seed_state(q->sampler.seed, q->seed_stream);
    if (q->max_new_tokens == 0) finish(e, x, FINISH_LENGTH, 0, 1);
    return 0;
}

void gen_engine_cancel(GenEngine *e, GenSeq *q) {
    if (q->slot < 0 || q->slot >= e->n_slots || e->slots[q->slot].seq != q) return;
    finish(e, &e->slots[q->slot], FINISH_CANCELLED, e->slots[q->slot].n_bytes, 0);
}

void gen_seq_free(GenSeq *q) {
    free(q->tokens), free(q->text);
    q->tokens = NULL, q->text = NULL;
}

static int is_stop_id(const GenSeq *q, int t) {
    for (int k = 0; k < q->n_stop_ids; k++)
        if (t == q->stop_ids[k]) return 1;
    return 0;
}

// Masks every token that would leave the JSON language; stop tokens only once the document is whole.
// Returns 0 when no token is left.
static int constrain(const GenEngine *e, const GenSeq *q, float *lg) {
    int complete = json_matcher_complete(q->json), left = 0;
    for (int t = 0; t < e->V; t++) {
        int ok;
        if (is_stop_id(q, t))
            ok = complete;
        else if (!e->tok_text[t])
            ok = 0;
        else
            ok = json_matcher_accepts(q->json, e->tok_bytes[t], (size_t)e->tok_len[t]);
        if (!ok) lg[t] = -INFINITY;
        left += ok;
    }
    return left > 0;
}

// The GPU path's token choice for the n_rows wanted rows of the last forward: each row's penalty list and
// uniform draw are made here in the CPU sampler's order (so the RNG streams advance identically) and the choice
// runs on the device; rows under a JSON constraint, and sampled rows with too many candidates for the device's
// sort, come to the host and are decided there as on the CPU path.
static int pick_on_gpu(GenEngine *e, int n_rows) {
    long total = 0;
    for (int r = 0; r < n_rows; r++) total += e->slots[e->row_slot[r]].n_hist;
    // three lists per row, each at most its history long: the repetition penalty's tokens, the generated
    // tokens counted, and their counts
    int *pen = ld_xmalloc(sizeof(int) * 3 * (size_t)(total ? total : 1)), *cnt_tok = pen + total, *cnt = cnt_tok + total;
    int off = 0, cnt_off = 0, rc = -1;
    for (int r = 0; r < n_rows; r++) {
        Slot *x = &e->slots[e->row_slot[r]];
        const SamplerParams *p = &x->seq->sampler;
        KcSampleRow *s = &e->sample_rows[r];
        *s = (KcSampleRow){.temperature = p->temperature,
                           .top_p = p->top_p,
                           .min_p = p->min_p,
                           .repeat_penalty = p->repeat_penalty,
                           .frequency_penalty = p->frequency_penalty,
                           .presence_penalty = p->presence_penalty,
                           .top_k = p->top_k};
        if (x->seq->json) {  // decided on the host: the device only takes a cheap argmax
            s->temperature = 0, s->repeat_penalty = 1.0f, s->frequency_penalty = s->presence_penalty = 0;
            continue;
        }
        s->penalized = pen + off, s->n_penalized = sampler_penalized(p, x->hist, x->n_hist, e->V, pen + off);
        off += s->n_penalized;
        s->counted = cnt_tok + cnt_off, s->counts = cnt + cnt_off;
        s->n_counted = sampler_counted(p, x->hist + x->seq->n_prompt, x->n_hist - x->seq->n_prompt, e->V, cnt_tok + cnt_off, cnt + cnt_off);
        cnt_off += s->n_counted;
        if (p->temperature > 0) s->u = sampler_uniform(&x->rng);
    }
    if (gpu_model_sample(e->gpu, e->sample_rows, n_rows, e->picked)) goto done;
    for (int r = 0; r < n_rows; r++) {
        Slot *x = &e->slots[e->row_slot[r]];
        GenSeq *q = x->seq;
        const KcSampleRow *s = &e->sample_rows[r];
        float *lg = e->logits + (size_t)r * e->V;
        if (!q->json && e->picked[r] >= 0) continue;
        if (gpu_model_logits_row(e->gpu, r, lg)) goto done;
        if (q->json)
            e->picked[r] =
                constrain(e, q, lg) ? sampler_sample(&q->sampler, &x->rng, lg, e->V, x->hist, x->n_hist, x->n_hist - q->n_prompt) : -1;
        else
            e->picked[r] = k_sample_row(lg, e->V, s->temperature, s->top_k, s->top_p, s->min_p, s->u);  // already penalised
    }
    rc = 0;
done:
    free(pen);
    return rc;
}

int gen_engine_step(GenEngine *e) {
    // one batch: a decode token for every sequence whose prompt is in, then prompt chunks
    int nb = 0;
    for (int s = 0; s < e->n_slots; s++) {
        Slot *x = &e->slots[s];
        if (!x->seq || x->n_fed < x->n_hist - 1 || x->n_fed >= x->n_hist) continue;
        e->tok[nb] = x->hist[x->n_fed], e->sl[nb] = s, e->ps[nb] = x->n_fed, e->want[nb] = 1, e->owner[nb] = s;
        nb++;
    }
    int prompt_budget = e->chunk;  // prompt tokens this call may carry besides the decode tokens
    for (int s = 0; s < e->n_slots && prompt_budget > 0; s++) {
        Slot *x = &e->slots[s];
        if (!x->seq || x->n_fed >= x->n_hist - 1) continue;
        int take = x->n_hist - x->n_fed;
        if (take > prompt_budget) take = prompt_budget;
        prompt_budget -= take;
        for (int k = 0; k < take; k++) {
            e->tok[nb] = x->hist[x->n_fed + k], e->sl[nb] = s, e->ps[nb] = x->n_fed + k, e->owner[nb] = s;
            e->want[nb] = x->n_fed + k == x->n_hist - 1;
            nb++;
        }
    }
    if (nb == 0) return 0;
    // on the GPU the logits stay there and only the chosen tokens come back
    if (e->gpu ? gpu_model_forward(e->gpu, e->tok, e->sl, e->ps, nb, e->want, NULL)
               : model_forward(e->m, e->kv, e->tok, e->sl, e->ps, nb, e->want, e->logits))
        return -1;
    for (int i = 0; i < nb; i++) e->slots[e->owner[i]].n_fed++;
    int fed = nb, n_rows = 0, V = e->V;
    for (int i = 0; i < nb; i++)
        if (e->want[i]) e->row_slot[n_rows++] = e->owner[i];
    if (e->gpu && pick_on_gpu(e, n_rows)) return -1;
    for (int row = 0; row < n_rows; row++) {
        Slot *x = &e->slots[e->row_slot[row]];
        GenSeq *q = x->seq;
        int t;
        if (e->gpu) {
            t = e->picked[row];
        } else {
            float *lg = e->logits + (size_t)row * V;
            t = q->json && !constrain(e, q, lg) ? -1
                                                : sampler_sample(&q->sampler, &x->rng, lg, V, x->hist, x->n_hist, x->n_hist - q->n_prompt);
        }
        if (t < 0) {  // the JSON constraint allows no token here
            finish(e, x, FINISH_STOP, x->n_bytes, 1);
            continue;
        }
        if (is_stop_id(q, t)) {
            finish(e, x, FINISH_STOP, x->n_bytes, 1);
            continue;
        }
        if (q->json) json_matcher_feed(q->json, e->tok_bytes[t], (size_t)e->tok_len[t]);
        x->hist[x->n_hist++] = t;
        q->tokens = ld_xrealloc(q->tokens, sizeof(int) * (size_t)(q->n_tokens + 1));
        q->tokens[q->n_tokens++] = t;
        size_t before = x->n_bytes;
        slot_append_bytes(x, e->tok_bytes[t], e->tok_len[t]);
        long at = find_stop(q, x->bytes, x->n_bytes, before);
        if (at >= 0) {
            finish(e, x, FINISH_STOP, (size_t)at, 1);
        } else if (q->n_tokens >= q->max_new_tokens) {
            finish(e, x, FINISH_LENGTH, x->n_bytes, 1);
        } else if (q->on_text) {
            size_t safe = x->n_bytes - stop_holdback(q, x->bytes, x->n_bytes);
            stream_upto(x, safe - incomplete_utf8_tail(x->bytes, safe));
        }
    }
    return fed;
}

// ---- generate(): a fixed list of requests ------------------------------------------------------------------

typedef struct {
    GenRequest *reqs;
    const GenParams *p;
    GenStreamFn stream;
    void *stream_ctx;
    int done, total;
    long tokens;
} Batch;

typedef struct {
    GenSeq seq;
    Batch *b;
    int index;
} BatchSeq;

static void batch_text(void *ctx, GenSeq *s, const char *bytes, int n) {
    BatchSeq *bs = ctx;
    (void)s;
    bs->b->stream(bs->b->stream_ctx, bs->index, bytes, n);
}

static void batch_done(void *ctx, GenSeq *s) {
    BatchSeq *bs = ctx;
    Batch *b = bs->b;
    GenRequest *r = &b->reqs[bs->index];
    r->tokens = s->tokens, r->n_tokens = s->n_tokens, r->text = s->text, r->finish = s->finish;
    s->tokens = NULL, s->text = NULL;
    b->done++;
    b->tokens += r->n_tokens;
    if (b->p->progress) b->p->progress(b->p->progress_ctx, b->done, b->total, b->tokens);
}

int generate(const Model *m, GenRequest *reqs, int n, const GenParams *p, GenStreamFn stream, void *ctx) {
    int max_prompt = 0;
    for (int i = 0; i < n; i++) {
        reqs[i].tokens = NULL, reqs[i].n_tokens = 0, reqs[i].text = NULL, reqs[i].finish = FINISH_NONE;
        if (reqs[i].n_prompt <= 0) {
            ld_set_error("request %d: empty prompt", i);
            return -1;
        }
        if (reqs[i].n_prompt > max_prompt) max_prompt = reqs[i].n_prompt;
    }
    if (n == 0) return 0;
    long ctx_len = (long)max_prompt + p->max_new_tokens;
    if (ctx_len > m->cfg.max_pos) {
        ld_set_error("a prompt of %d tokens plus %d new tokens exceeds the model's context of %d", max_prompt, p->max_new_tokens,
                     m->cfg.max_pos);
        return -1;
    }
    GenEngine *e = gen_engine_new(m, p->max_batch < n ? p->max_batch : n, (int)ctx_len, p->prefill_chunk, p->use_gpu, p->gpu_bf16);
    if (!e) return -1;
    Batch b = {reqs, p, stream, ctx, 0, n, 0};
    BatchSeq *seqs = ld_xcalloc((size_t)n, sizeof(BatchSeq));
    int next = 0, rc = 0;
    while (b.done < n && !rc) {
        while (next < n && gen_engine_free_slots(e) > 0) {  // admit new requests into free slots
            BatchSeq *bs = &seqs[next];
            bs->b = &b, bs->index = next;
            bs->seq = (GenSeq){.prompt = reqs[next].prompt,
                               .n_prompt = reqs[next].n_prompt,
                               .max_new_tokens = p->max_new_tokens,
                               .sampler = p->sampler,
                               .seed_stream = reqs[next].seed_stream,
                               .stop_strings = p->stop_strings,
                               .n_stop_strings = p->n_stop_strings,
                               .stop_ids = p->stop_ids,
                               .n_stop_ids = p->n_stop_ids,
                               .on_text = stream ? batch_text : NULL,
                               .on_done = batch_done,
                               .ctx = bs};
            next++;
            if (gen_engine_add(e, &bs->seq)) rc = -1;
        }
        if (!rc && b.done < n) rc = gen_engine_step(e) < 0 ? -1 : 0;
    }
    free(seqs);
    gen_engine_free(e);
    return rc;
}

void gen_request_free(GenRequest *r) {
    free(r->tokens);
    free(r->text);
    r->tokens = NULL;
    r->text = NULL;
}
