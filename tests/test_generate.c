// Sampling filters and batched generation: greedy/top-k/top-p/min-p/repetition, frequency and presence penalties
// behave as defined,
// batching does not change answers, stop strings cut exactly, streaming delivers exactly the final text.
#include <math.h>
#include <string.h>

#include "backend.h"
#include "generate.h"
#include "sampler.h"
#include "test_util.h"
#include "transformer.h"
#include "util.h"

// A KV-cache plan serves a prefill (a run of one sequence's tokens) in tiles, its ranges as rows of the whole cache,
// and decode tokens (one of each of several sequences, which the engine puts first) token by token, their ranges
// from each sequence's row 0.
static int plan_rows_wrong(const TokenPlan *p, const int *slot, const int *pos, int ctx, int W) {
    int bad = 0;
    for (int i = 0; i < p->n; i++) {
        int from = i < p->n_single ? 0 : slot[i] * ctx, win = W && pos[i] - W + 1 > 0 ? pos[i] - W + 1 : 0;
        bad += p->lo_global[i] != from || p->hi[i] != from + pos[i] || p->lo_local[i] != from + win || p->kv_row[i] != slot[i] * ctx + pos[i] ||
               (i < p->n_single && (!p->kv_base || p->kv_base[i] != slot[i] * ctx));
    }
    return bad;
}

static void check_token_plans(void) {
    ModelConfig c = {.sliding_window = 16};
    int ctx = 128, tok[80] = {0}, slot[80], pos[80];
    struct {
        const char *what;
        int n_decode, decode_pos, n_prompt, prompt_pos, want_single;
    } cases[] = {
        {"a 70-token prefill", 0, 0, 70, 0, 0},
        {"4 decode tokens", 4, 50, 0, 0, 4},
        {"3 decode tokens, then a 70-token prefill", 3, 50, 70, 0, 3},
        {"a prompt's last 5 tokens after 60 (a short run)", 0, 0, 5, 60, 5},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int n = 0;
        for (int i = 0; i < cases[k].n_decode; i++, n++) slot[n] = i, pos[n] = cases[k].decode_pos + i;
        for (int i = 0; i < cases[k].n_prompt; i++, n++) slot[n] = 7, pos[n] = cases[k].prompt_pos + i;
        TokenPlan p;
        CHECK(token_plan_cached(&ld_backend_cpu, &c, tok, slot, pos, n, ctx, &p) == 0, "%s: %s", cases[k].what, ld_last_error());
        int bad = plan_rows_wrong(&p, slot, pos, ctx, c.sliding_window);
        CHECK(p.n_single == cases[k].want_single && !bad && !p.kv_base == !p.n_single,
              "%s: %d token by token (want %d), the rest in tiles; %d rows wrong", cases[k].what, p.n_single, cases[k].want_single, bad);
        token_plan_free(&ld_backend_cpu, &p);
    }
}

// OpenAI's frequency and presence penalties: logit -= count·frequency + presence over the generated tokens only
// (the prompt's are not counted), after the repetition penalty.
static void check_count_penalties(void) {
    const int hist[6] = {3, 3, 1, 2, 1, 1};  // prompt {3, 3}, generated {1, 2, 1, 1}
    int toks[4], counts[4];
    SamplerParams p = sampler_defaults();
    CHECK(sampler_counted(&p, hist + 2, 4, 4, toks, counts) == 0, "counts listed with both penalties off");
    p.frequency_penalty = 0.5f, p.presence_penalty = 0.25f;
    int n = sampler_counted(&p, hist + 2, 4, 4, toks, counts);
    CHECK(n == 2 && toks[0] == 1 && counts[0] == 3 && toks[1] == 2 && counts[1] == 1, "counted %d tokens: %d×%d, %d×%d", n, toks[0],
          counts[0], toks[1], counts[1]);
    float l[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    CHECK(sampler_sample(&p, NULL, l, 4, hist, 6, 4) == 3, "frequency penalty: greedy pick changed");
    CHECK(l[0] == 1.0f && l[1] == 0.25f && l[2] == 2.25f && l[3] == 4.0f, "frequency + presence: %g %g %g %g, want 1 0.25 2.25 4", l[0],
          l[1], l[2], l[3]);
    SamplerParams pres = sampler_defaults();
    pres.presence_penalty = 2.0f;
    float q[3] = {0.0f, 3.0f, 2.5f};
    int h[2] = {2, 1};  // prompt {2}, generated {1}: only token 1 is penalised
    CHECK(sampler_sample(&pres, NULL, q, 3, h, 2, 1) == 2 && q[1] == 1.0f && q[2] == 2.5f, "presence penalty: %g %g", q[1], q[2]);
    pres.presence_penalty = 0, pres.frequency_penalty = -1.0f;  // negative: encourages repeats
    float e[3] = {0.0f, 2.5f, 3.0f};
    CHECK(sampler_sample(&pres, NULL, e, 3, h, 2, 1) == 1 && e[1] == 3.5f && e[2] == 3.0f, "negative frequency penalty: %g %g", e[1], e[2]);
    p.repeat_penalty = 2.0f, p.repeat_last_n = 0;  // the repetition penalty first (over prompt and answer), then the counts
    float r[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    sampler_penalize(&p, r, 4, hist, 6, 4);
    CHECK(r[0] == 1.0f && r[1] == -0.75f && r[2] == 0.75f && r[3] == 2.0f, "repetition then frequency: %g %g %g %g, want 1 -0.75 0.75 2",
          r[0], r[1], r[2], r[3]);
}

static void check_sampler(void) {
    float base[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)}, l[4];
    SamplerParams p = sampler_defaults();
    memcpy(l, base, sizeof l);
    CHECK(sampler_sample(&p, NULL, l, 4, NULL, 0, 0) == 0, "greedy is not the argmax");
    int counts[4] = {0};
    uint64_t rng = sampler_seed_state(1, 0);
    p.temperature = 1.0f;
    const int N = 40000;
    for (int i = 0; i < N; i++) {
        memcpy(l, base, sizeof l);
        counts[sampler_sample(&p, &rng, l, 4, NULL, 0, 0)]++;
    }
    const double want[4] = {0.5, 0.3, 0.15, 0.05};
    for (int k = 0; k < 4; k++)
        CHECK(fabs(counts[k] / (double)N - want[k]) < 0.01, "token %d sampled %.3f, want %.2f", k, counts[k] / (double)N, want[k]);
    struct {
        const char *what;
        SamplerParams p;
        int allowed;  // bitmask of tokens that may appear
    } cases[] = {
        {"top-k 2", {.temperature = 1, .top_k = 2, .top_p = 1}, 0x3},
        {"top-p 0.7", {.temperature = 1, .top_p = 0.7f}, 0x3},
        {"min-p 0.35", {.temperature = 1, .top_p = 1, .min_p = 0.35f}, 0x3},
        {"min-p 0.25", {.temperature = 1, .top_p = 1, .min_p = 0.25f}, 0x7},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int seen = 0;
        for (int i = 0; i < 4000; i++) {
            memcpy(l, base, sizeof l);
            seen |= 1 << sampler_sample(&cases[c].p, &rng, l, 4, NULL, 0, 0);
        }
        CHECK(seen == cases[c].allowed, "%s: tokens seen 0x%x, allowed 0x%x", cases[c].what, seen, cases[c].allowed);
    }
    // repetition penalty: a seen token with the top logit loses it
    float r[3] = {2.0f, 1.5f, -1.0f};
    int hist[2] = {0, 0};
    SamplerParams rp = sampler_defaults();
    rp.repeat_penalty = 1.5f;
    CHECK(sampler_sample(&rp, NULL, r, 3, hist, 2, 0) == 1, "repetition penalty did not demote the repeated token");
    CHECK(fabsf(r[0] - 2.0f / 1.5f) < 1e-6, "a token seen twice was penalised twice (%f)", r[0]);
    check_count_penalties();
    // seeded: same seed and stream, same draws; different streams differ
    uint64_t a = sampler_seed_state(42, 3), b = sampler_seed_state(42, 3), c2 = sampler_seed_state(42, 4);
    int same = 1, diff = 0;
    for (int i = 0; i < 50; i++) {
        float x[4], y[4], z[4];
        memcpy(x, base, sizeof x), memcpy(y, base, sizeof y), memcpy(z, base, sizeof z);
        int sa = sampler_sample(&p, &a, x, 4, NULL, 0, 0), sb = sampler_sample(&p, &b, y, 4, NULL, 0, 0),
            sc = sampler_sample(&p, &c2, z, 4, NULL, 0, 0);
        same &= sa == sb;
        diff |= sa != sc;
    }
    CHECK(same && diff, "seeding: same stream reproduces (%d), other stream differs (%d)", same, diff);
}

typedef struct {
    char buf[4][4096];
    size_t len[4];
} Streams;

static void on_stream(void *ctx, int req, const char *b, int n) {
    Streams *s = ctx;
    memcpy(s->buf[req] + s->len[req], b, (size_t)n);
    s->len[req] += (size_t)n;
}

static void check_generation(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tiny/llama", LD_FIXTURES);
    Model *m = model_load(dir);
    CHECK(m != NULL, "%s", ld_last_error());
    if (!m) return;
    const char *prompts[4] = {"hello", "the quick brown fox jumps", "a", "tokens for tests of the llamaduo engine 1234"};
    GenRequest batch[4], solo;
    int stop_checked = 0;
    int *ids[4], n[4];
    for (int i = 0; i < 4; i++) {
        n[i] = tok_encode(m->tok, prompts[i], strlen(prompts[i]), 0, &ids[i]);
        batch[i] = (GenRequest){.prompt = ids[i], .n_prompt = n[i]};
    }
    GenParams p = gen_defaults();
    p.max_new_tokens = 24;
    p.max_batch = 3;  // fewer slots than requests: the fourth joins when one finishes
    Streams st = {0};
    CHECK(generate(m, batch, 4, &p, on_stream, &st) == 0, "%s", ld_last_error());
    for (int i = 0; i < 4; i++) {
        solo = (GenRequest){.prompt = ids[i], .n_prompt = n[i]};
        GenParams one = p;
        one.max_batch = 1;
        generate(m, &solo, 1, &one, NULL, NULL);
        CHECK(solo.n_tokens == batch[i].n_tokens && !memcmp(solo.tokens, batch[i].tokens, sizeof(int) * solo.n_tokens),
              "prompt %d: batched answer differs from the solo one", i);
        CHECK(batch[i].finish == FINISH_LENGTH && batch[i].n_tokens == 24, "prompt %d: %d tokens, finish %d", i, batch[i].n_tokens,
              batch[i].finish);
        CHECK(st.len[i] == strlen(batch[i].text) && !memcmp(st.buf[i], batch[i].text, st.len[i]), "prompt %d: streamed text differs", i);
        // stop string: a piece from the middle of the answer cuts it right before its first occurrence
        // (random weights emit arbitrary bytes: take a stop string of printable ASCII from the answer)
        size_t L = strlen(batch[i].text), from = L;
        for (size_t k = L / 3; k + 3 <= L && from == L; k++)
            if (batch[i].text[k] > 32 && batch[i].text[k] < 127 && batch[i].text[k + 1] > 32 && batch[i].text[k + 1] < 127 &&
                batch[i].text[k + 2] > 32 && batch[i].text[k + 2] < 127)
                from = k;
        if (from < L) {
            stop_checked++;
            char stop[4];
            memcpy(stop, batch[i].text + from, 3);
            stop[3] = 0;
            const char *stops[1] = {stop};
            GenParams sp = one;
            sp.stop_strings = stops;
            sp.n_stop_strings = 1;
            GenRequest cut = {.prompt = ids[i], .n_prompt = n[i]};
            Streams st2 = {0};
            generate(m, &cut, 1, &sp, on_stream, &st2);
            size_t at = (size_t)(strstr(batch[i].text, stop) - batch[i].text);
            CHECK(cut.finish == FINISH_STOP && strlen(cut.text) == at && !memcmp(cut.text, batch[i].text, at),
                  "prompt %d: stop string '%s' cut at %zu, want %zu", i, stop, strlen(cut.text), at);
            CHECK(st2.len[0] == at, "prompt %d: streamed %zu bytes past the stop string", i, st2.len[0]);
            gen_request_free(&cut);
        }
        gen_request_free(&solo);
        gen_request_free(&batch[i]);
        free(ids[i]);
    }
    CHECK(stop_checked >= 2, "stop strings exercised on only %d prompts", stop_checked);
    model_free(m);
}

int main(void) {
    check_sampler();
    check_token_plans();
    check_generation();
    return test_finish("test_generate");
}
