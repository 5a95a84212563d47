// Tokenizer parity with HF `tokenizers` on the real Llama 3, Qwen 3 and Gemma 3 tokenizers
// (fixtures: tools/make_tokenizer_fixtures.py), plus round trips and bad-input handling.
#include <cjson/cJSON.h>
#include <string.h>

#include "gguf.h"
#include "test_util.h"
#include "tokenizer.h"
#include "util.h"

static int same_ids(const int *a, int na, const cJSON *b) {
    if (na != cJSON_GetArraySize(b)) return 0;
    int i = 0;
    for (const cJSON *x = b->child; x; x = x->next, i++)
        if (a[i] != x->valueint) return 0;
    return 1;
}

static void check_tokenizer(const char *name) {
    char path[1024];
    if (!strcmp(name, "metaspace")) {  // trained by the fixture script: the Mistral / Llama 2 layout
        snprintf(path, sizeof path, "%s/tokenizers/metaspace.tokenizer.json", LD_FIXTURES);
    } else {
        char rel[128];
        snprintf(rel, sizeof rel, "data/tokenizers/%s/tokenizer.json", name);
        if (!test_shared(path, sizeof path, name, rel)) return;
    }
    double t0 = ld_time_s();
    Tokenizer *tok = tok_load_hf_file(path);
    CHECK(tok != NULL, "%s: load failed: %s", name, ld_last_error());
    if (!tok) return;
    double t1 = ld_time_s();
    snprintf(path, sizeof path, "%s/tokenizers/%s.jsonl", LD_FIXTURES, name);
    char *fx = test_read(path);
    int n = 0, bad = 0, bad_plain = 0, roundtrip = 0, roundtrip_checked = 0;
    for (char *line = strtok(fx, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *rec = cJSON_Parse(line);
        const char *text = cJSON_GetObjectItem(rec, "text")->valuestring;
        int *ids;
        int k = tok_encode(tok, text, strlen(text), TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &ids);
        if (!same_ids(ids, k, cJSON_GetObjectItem(rec, "ids"))) {
            if (bad++ < 3) {
                char *got = cJSON_PrintUnformatted(cJSON_GetObjectItem(rec, "ids"));
                fprintf(stderr, "%s: ids differ for %s\n  want %s\n  got ", name, cJSON_PrintUnformatted(cJSON_GetObjectItem(rec, "text")),
                        got);
                for (int i = 0; i < k; i++) fprintf(stderr, "%d,", ids[i]);
                fprintf(stderr, "\n");
                free(got);
            }
        }
        free(ids);
        k = tok_encode(tok, text, strlen(text), 0, &ids);
        if (!same_ids(ids, k, cJSON_GetObjectItem(rec, "ids_plain")) && bad_plain++ < 3)
            fprintf(stderr, "%s: plain ids differ for %s\n", name, cJSON_PrintUnformatted(cJSON_GetObjectItem(rec, "text")));
        char *dec = tok_decode(tok, ids, k, 0);
        const char *want = cJSON_GetObjectItem(rec, "decoded")->valuestring;
        if (!strcmp(want, text)) {  // round trip where the reference round-trips
            roundtrip_checked++;
            if (strcmp(dec, text) && roundtrip++ < 3) fprintf(stderr, "%s: decode(encode(x)) != x for %s -> %s\n", name, text, dec);
        }
        CHECK(!strcmp(dec, want), "%s: decode differs from reference for '%s': '%s' vs '%s'", name, text, dec, want);
        free(dec);
        free(ids);
        cJSON_Delete(rec);
        n++;
    }
    double t2 = ld_time_s();
    printf("%s: %d strings, load %.2fs, encode %.2fs; mismatches: %d (specials parsed), %d (plain), round trip %d/%d\n", name, n, t1 - t0,
           t2 - t1, bad, bad_plain, roundtrip, roundtrip_checked);
    CHECK(n >= 2000, "%s: corpus has only %d strings", name, n);
    CHECK(bad == 0 && bad_plain == 0, "%s: token ids differ from HF tokenizers", name);
    CHECK(roundtrip == 0, "%s: round trip failures", name);
    free(fx);
    tok_free(tok);
}

// The SentencePiece path of GGUF tokenizers (scores instead of merges): the packaged Gemma 3 GGUF against HF
// tokenizers on the same corpus. (Its GGUF marks <mask>/<unusedN> as control tokens where tokenizer.json
// has them as plain added tokens, so the comparison parses special tokens.)
static void check_gguf_gemma3(void) {
    char p[1024];
    snprintf(p, sizeof p, "%s/gemma-3-270m-q4_k_m.gguf", LD_MODELS);
    Gguf g;
    if (gguf_open(p, &g)) {
        CHECK(0, "%s (run tools/setup.sh to fetch the packaged models)", ld_last_error());
        return;
    }
    Tokenizer *tok = tok_load_gguf(&g);
    CHECK(tok != NULL, "%s", ld_last_error());
    snprintf(p, sizeof p, "%s/tokenizers/gemma3.jsonl", LD_FIXTURES);
    char *fx = test_read(p);
    int n = 0, bad = 0;
    for (char *line = strtok(fx, "\n"); line && tok; line = strtok(NULL, "\n"), n++) {
        cJSON *rec = cJSON_Parse(line);
        const char *text = cJSON_GetObjectItem(rec, "text")->valuestring;
        int *ids, k = tok_encode(tok, text, strlen(text), TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &ids);
        if (!same_ids(ids, k, cJSON_GetObjectItem(rec, "ids")) && bad++ < 3) fprintf(stderr, "gemma3 GGUF: ids differ for %s\n", text);
        free(ids);
        cJSON_Delete(rec);
    }
    printf("gemma3 GGUF tokenizer (scores, no merges): %d strings, %d mismatches with HF tokenizer.json\n", n, bad);
    CHECK(n >= 2000 && bad == 0, "GGUF SentencePiece tokenizer differs from HF");
    free(fx);
    tok_free(tok);
    gguf_close(&g);
}

static void check_bad_input(void) {
    const char *cases[] = {
        "",
        "{",
        "[]",
        "{\"model\": 3}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": []}}",
        "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -4}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
        "\"behavior\": \"Isolated\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": \"x\"}]}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"normalizer\": {\"type\": \"Lowercase\"}}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Tokenizer *t = tok_load_hf_json(cases[i], strlen(cases[i]), "bad.json");
        CHECK(t == NULL, "bad tokenizer.json case %zu was accepted", i);
        if (!t) CHECK(strstr(ld_last_error(), "bad.json") != NULL, "error does not name the file: %s", ld_last_error());
        tok_free(t);
    }
}

int main(void) {
    check_tokenizer("llama3");
    check_tokenizer("qwen3");
    check_tokenizer("gemma3");
    check_tokenizer("metaspace");
    check_gguf_gemma3();
    check_bad_input();
    return test_finish("test_tokenizer");
}
