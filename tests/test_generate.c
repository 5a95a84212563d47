// Sampling filters and batched generation: greedy/top-k/top-p/min-p/repetition penalty behave as defined,
// batching does not change answers, stop strings cut exactly, streaming delivers exactly the final text.
#include <math.h>
#include <string.h>

#include "generate.h"
#include "sampler.h"
#include "test_util.h"
#include "util.h"

static void check_sampler(void) {
    float base[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)}, l[4];
    SamplerParams p = sampler_defaults();
    memcpy(l, base, sizeof l);
    CHECK(sampler_sample(&p, NULL, l, 4, NULL, 0) == 0, "greedy is not the argmax");
    int counts[4] = {0};
    uint64_t rng = sampler_seed_state(1, 0);
    p.temperature = 1.0f;
    const int N = 40000;
    for (int i = 0; i < N; i++) {
        memcpy(l, base, sizeof l);
        counts[sampler_sample(&p, &rng, l, 4, NULL, 0)]++;
    }
    const double want[4] = {0.5, 0.3, 0.15, 0.05};
    for (int k = 0; k < 4; k++) CHECK(fabs(counts[k] / (double)N - want[k]) < 0.01, "token %d sampled %.3f, want %.2f", k, counts[k] / (double)N, want[k]);
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
            seen |= 1 << sampler_sample(&cases[c].p, &rng, l, 4, NULL, 0);
        }
        CHECK(seen == cases[c].allowed, "%s: tokens seen 0x%x, allowed 0x%x", cases[c].what, seen, cases[c].allowed);
    }
    // repetition penalty: a seen token with the top logit loses it
    float r[3] = {2.0f, 1.5f, -1.0f};
    int hist[2] = {0, 0};
    SamplerParams rp = sampler_defaults();
    rp.repeat_penalty = 1.5f;
    CHECK(sampler_sample(&rp, NULL, r, 3, hist, 2) == 1, "repetition penalty did not demote the repeated token");
    CHECK(fabsf(r[0] - 2.0f / 1.5f) < 1e-6, "a token seen twice was penalised twice (%f)", r[0]);
    // seeded: same seed and stream, same draws; different streams differ
    uint64_t a = sampler_seed_state(42, 3), b = sampler_seed_state(42, 3), c2 = sampler_seed_state(42, 4);
    int same = 1, diff = 0;
    for (int i = 0; i < 50; i++) {
        float x[4], y[4], z[4];
        memcpy(x, base, sizeof x), memcpy(y, base, sizeof y), memcpy(z, base, sizeof z);
        int sa = sampler_sample(&p, &a, x, 4, NULL, 0), sb = sampler_sample(&p, &b, y, 4, NULL, 0), sc = sampler_sample(&p, &c2, z, 4, NULL, 0);
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
        CHECK(batch[i].finish == FINISH_LENGTH && batch[i].n_tokens == 24, "prompt %d: %d tokens, finish %d", i, batch[i].n_tokens, batch[i].finish);
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
    check_generation();
    return test_finish("test_generate");
}
