#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "util.h"

GenParams gen_defaults(void) {
    return (GenParams){.max_new_tokens = 256, .sampler = sampler_defaults(), .max_batch = 16, .prefill_chunk = 512};
}

int gen_default_stop_ids(const Model *m, int *ids, int cap) {
    static const char *eot[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end_of_text|>", "<|endoftext|>",
                                "</s>", "<eos>", "<|eom_id|>"};
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

void gen_request_free(GenRequest *r) {
    free(r->tokens);
    free(r->text);
    r->tokens = NULL;
    r->text = NULL;
}

typedef struct {
    int req;        // request index, -1 when the slot is free
    int n_fed;      // tokens of this sequence already in the cache
    int *hist;      // prompt + generated tokens
    int n_hist;
    char *bytes;    // generated text bytes
    size_t n_bytes, cap_bytes, n_streamed;
    uint64_t rng;
} Slot;

static void slot_append_bytes(Slot *s, const char *b, int n) {
    if (s->n_bytes + (size_t)n + 1 > s->cap_bytes) s->bytes = ld_xrealloc(s->bytes, s->cap_bytes = (s->n_bytes + n + 1) * 2);
    memcpy(s->bytes + s->n_bytes, b, (size_t)n);
    s->n_bytes += (size_t)n;
    s->bytes[s->n_bytes] = 0;
}

// Earliest occurrence of any stop string in the text, searching only where a new match can be.
static long find_stop(const GenParams *p, const char *s, size_t n, size_t from) {
    long best = -1;
    for (int i = 0; i < p->n_stop_strings; i++) {
        size_t L = strlen(p->stop_strings[i]);
        if (!L || L > n) continue;
        size_t start = from > L ? from - L : 0;
        for (size_t k = start; k + L <= n; k++)
            if (!memcmp(s + k, p->stop_strings[i], L)) {
                if (best < 0 || (long)k < best) best = (long)k;
                break;
            }
    }
    return best;
}

// Bytes at the end of the text that could still grow into a stop string: held back from the stream.
static size_t stop_holdback(const GenParams *p, const char *s, size_t n) {
    size_t hold = 0;
    for (int i = 0; i < p->n_stop_strings; i++) {
        size_t L = strlen(p->stop_strings[i]);
        for (size_t k = L > n ? n : L - 1; k > hold; k--)
            if (!memcmp(s + n - k, p->stop_strings[i], k)) {
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
static void stream_upto(Slot *s, size_t upto, GenStreamFn stream, void *ctx) {
    if (!stream || upto <= s->n_streamed) return;
    size_t n;
    char *t = ld_utf8_repair(s->bytes + s->n_streamed, upto - s->n_streamed, &n);
    stream(ctx, s->req, t, (int)n);
    free(t);
    s->n_streamed = upto;
}

static void finish(GenRequest *r, Slot *s, FinishReason why, size_t text_len, GenStreamFn stream,
                   void *ctx) {
    stream_upto(s, text_len, stream, ctx);
    char *out = ld_utf8_repair(s->bytes ? s->bytes : "", text_len, NULL);
    r->text = out;
    r->finish = why;
}

int generate(const Model *m, GenRequest *reqs, int n, const GenParams *p, GenStreamFn stream, void *ctx) {
    int V = m->cfg.vocab, max_prompt = 0;
    for (int i = 0; i < n; i++) {
        reqs[i].tokens = NULL;
        reqs[i].n_tokens = 0;
        reqs[i].text = NULL;
        reqs[i].finish = FINISH_NONE;
        if (reqs[i].n_prompt <= 0) {
            ld_set_error("request %d: empty prompt", i);
            return -1;
        }
        if (reqs[i].n_prompt > max_prompt) max_prompt = reqs[i].n_prompt;
    }
    if (n == 0) return 0;
    long ctx_len = (long)max_prompt + p->max_new_tokens;
    if (ctx_len > m->cfg.max_pos) {
        ld_set_error("a prompt of %d tokens plus %d new tokens exceeds the model's context of %d", max_prompt,
                     p->max_new_tokens, m->cfg.max_pos);
        return -1;
    }
    int n_slots = p->max_batch < n ? p->max_batch : n;
    if (n_slots < 1) n_slots = 1;
    KVCache *kv = kv_new(&m->cfg, n_slots, (int)ctx_len);
    if (!kv) return -1;
    Slot *slots = ld_xcalloc((size_t)n_slots, sizeof(Slot));
    for (int i = 0; i < n_slots; i++) slots[i].req = -1;
    int chunk = p->prefill_chunk > 0 ? p->prefill_chunk : 512;
    int cap_tok = chunk + n_slots;
    int *tok = ld_xmalloc(sizeof(int) * cap_tok), *sl = ld_xmalloc(sizeof(int) * cap_tok), *ps = ld_xmalloc(sizeof(int) * cap_tok);
    int *owner = ld_xmalloc(sizeof(int) * cap_tok);
    uint8_t *want = ld_xmalloc((size_t)cap_tok);
    float *logits = ld_xmalloc(sizeof(float) * (size_t)n_slots * V);
    int next_req = 0, done = 0, rc = 0;
    long total_tokens = 0;
    char piece[512];
    while (done < n) {
        for (int s = 0; s < n_slots && next_req < n; s++) {  // admit new requests into free slots
            if (slots[s].req >= 0) continue;
            Slot *sl_ = &slots[s];
            GenRequest *r = &reqs[next_req];
            sl_->req = next_req++;
            sl_->n_fed = 0;
            sl_->hist = ld_xrealloc(sl_->hist, sizeof(int) * (size_t)(r->n_prompt + p->max_new_tokens + 1));
            memcpy(sl_->hist, r->prompt, sizeof(int) * (size_t)r->n_prompt);
            sl_->n_hist = r->n_prompt;
            sl_->n_bytes = sl_->n_streamed = 0;
            sl_->rng = sampler_seed_state(p->sampler.seed, r->seed_stream);
            if (p->max_new_tokens == 0) {
                slot_append_bytes(sl_, "", 0);
                finish(r, sl_, FINISH_LENGTH, 0, stream, ctx);
                sl_->req = -1;
                done++;
                s--;  // the slot is free again
            }
        }
        // Build one batch: a decode token for every sequence whose prompt is in, then prompt chunks.
        int nb = 0;
        for (int s = 0; s < n_slots; s++) {
            Slot *x = &slots[s];
            if (x->req < 0 || x->n_fed < x->n_hist - 1 || x->n_fed >= x->n_hist) continue;
            tok[nb] = x->hist[x->n_fed], sl[nb] = s, ps[nb] = x->n_fed, want[nb] = 1, owner[nb] = s;
            nb++;
        }
        int prompt_budget = chunk;  // prompt tokens this call may carry besides the decode tokens
        for (int s = 0; s < n_slots && prompt_budget > 0; s++) {
            Slot *x = &slots[s];
            if (x->req < 0 || x->n_fed >= x->n_hist - 1) continue;
            int take = x->n_hist - x->n_fed;
            if (take > prompt_budget) take = prompt_budget;
            prompt_budget -= take;
            for (int k = 0; k < take; k++) {
                tok[nb] = x->hist[x->n_fed + k], sl[nb] = s, ps[nb] = x->n_fed + k, owner[nb] = s;
                want[nb] = x->n_fed + k == x->n_hist - 1;
                nb++;
            }
        }
        if (nb == 0) break;
        if (model_forward(m, kv, tok, sl, ps, nb, want, logits)) {
            rc = -1;
            break;
        }
        int row = 0;
        int *fed_now = ld_xcalloc((size_t)n_slots, sizeof(int));
        for (int i = 0; i < nb; i++) fed_now[owner[i]]++;
        for (int s = 0; s < n_slots; s++) slots[s].n_fed += fed_now[s];
        free(fed_now);
        for (int i = 0; i < nb; i++) {
            if (!want[i]) continue;
            Slot *x = &slots[owner[i]];
            GenRequest *r = &reqs[x->req];
            float *lg = logits + (size_t)row++ * V;
            int t = sampler_sample(&p->sampler, &x->rng, lg, V, x->hist, x->n_hist);
            int is_stop = 0;
            for (int k = 0; k < p->n_stop_ids; k++) is_stop |= t == p->stop_ids[k];
            if (is_stop) {
                finish(r, x, FINISH_STOP, x->n_bytes, stream, ctx);
            } else {
                x->hist[x->n_hist++] = t;
                r->tokens = ld_xrealloc(r->tokens, sizeof(int) * (size_t)(r->n_tokens + 1));
                r->tokens[r->n_tokens++] = t;
                size_t before = x->n_bytes;
                int nbts = tok_token_bytes(m->tok, t, piece, (int)sizeof piece);
                slot_append_bytes(x, piece, nbts);
                long at = find_stop(p, x->bytes, x->n_bytes, before);
                if (at >= 0) {
                    finish(r, x, FINISH_STOP, (size_t)at, stream, ctx);
                } else if (r->n_tokens >= p->max_new_tokens) {
                    finish(r, x, FINISH_LENGTH, x->n_bytes, stream, ctx);
                } else {
                    if (stream) {
                        size_t safe = x->n_bytes - stop_holdback(p, x->bytes, x->n_bytes);
                        stream_upto(x, safe - incomplete_utf8_tail(x->bytes, safe), stream, ctx);
                    }
                    continue;
                }
            }
            x->req = -1;
            done++;
            total_tokens += r->n_tokens;
            if (p->progress) p->progress(p->progress_ctx, done, n, total_tokens);
        }
    }
    for (int s = 0; s < n_slots; s++) {
        free(slots[s].hist);
        free(slots[s].bytes);
    }
    free(slots), free(tok), free(sl), free(ps), free(owner), free(want), free(logits);
    kv_free(kv);
    return rc;
}
