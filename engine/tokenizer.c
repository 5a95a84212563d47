#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "gguf.h"
#include "hashmap.h"
#include "util.h"

// ---- pieces of the pipeline ----------------------------------------------------------------------------

typedef enum { SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_REMOVED } SplitBehavior;

typedef struct {
    pcre2_code *re;
    SplitBehavior behavior;
} PreStep;

typedef struct {
    char *content;
    uint32_t len;
    int id, special;
} AddedToken;

struct Tokenizer {
    int byte_level;  // BPE over raw bytes (vocab stored de-mapped); else over UTF-8 characters
    int n_vocab;
    char **text;  // [n_vocab] token bytes (raw bytes for byte-level; ▁ form for SentencePiece style)
    uint32_t *len;
    uint8_t *special, *is_added;
    char **owned_text;  // strings allocated here
    StrMap vocab;  // model vocabulary: bytes -> id
    U64Map merges;  // (left id, right id) -> (rank, merged id)
    int byte_fallback, ignore_merges, unk_id, fuse_unk;
    int byte_tok[256];  // <0xNN> ids for byte fallback (-1 when absent)
    // normalizer
    int nfc;
    char *replace_from, *replace_to;  // e.g. " " -> "▁"
    char *prepend;  // e.g. "▁"
    // pre-tokenizer
    PreStep *steps;
    int n_steps;
    int prefix_space;  // ByteLevel(add_prefix_space): the text gains a leading ' ' when it lacks one
    // Metaspace pre-tokenizer (Mistral, Llama 2): spaces become the replacement, which is prepended to every
    // segment (always) or to the text's first one (first), then words split before each replacement
    char *metaspace;
    int metaspace_prepend;  // 0 never, 1 first, 2 always
    // added tokens, bucketed by first byte, longest first
    AddedToken *added;
    int n_added;
    int *bucket_start;  // [257] into added_order
    int *added_order;
    // post-processor
    int prefix_ids[4], n_prefix, suffix_ids[4], n_suffix;
    int bos_id, eos_id;
    // decoder
    int strip_leading_space;
};

// GPT-2's byte <-> printable code point table.
static int g_byte_to_cp[256], g_cp_to_byte[512];
static void init_byte_table(void) {
    if (g_byte_to_cp['!']) return;
    int n = 0;
    for (int i = 0; i < 512; i++) g_cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        g_byte_to_cp[b] = keep ? b : 256 + n++;
        g_cp_to_byte[g_byte_to_cp[b]] = b;
    }
}

// Byte-level vocabulary text (mapped code points) -> raw bytes, in place-safe new buffer.
static char *bytelevel_demap(const char *s, size_t n, uint32_t *out_len) {
    char *o = ld_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        utf8proc_ssize_t r = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (r <= 0) {
            o[k++] = s[i++];
            continue;
        }
        if (cp < 512 && g_cp_to_byte[cp] >= 0) {
            o[k++] = (char)g_cp_to_byte[cp];
        } else {
            memcpy(o + k, s + i, (size_t)r);
            k += (size_t)r;
        }
        i += (size_t)r;
    }
    o[k] = 0;
    *out_len = (uint32_t)k;
    return o;
}

static pcre2_code *compile_re(const char *pat, int literal, const char *name) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        ld_set_error("%s: cannot compile pre-tokenizer regex at offset %zu: %s", name, (size_t)off, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // best effort: falls back to the interpreter
    return re;
}

static const char *k_gpt2_regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *k_llama3_regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *k_qwen2_regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int add_step(Tokenizer *t, const char *pat, int literal, SplitBehavior b, const char *name) {
    pcre2_code *re = compile_re(pat, literal, name);
    if (!re) return -1;
    t->steps = ld_xrealloc(t->steps, sizeof(PreStep) * (size_t)(t->n_steps + 1));
    t->steps[t->n_steps++] = (PreStep){re, b};
    return 0;
}

static Tokenizer *tok_new(void) {
    init_byte_table();
    Tokenizer *t = ld_xcalloc(1, sizeof *t);
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int i = 0; i < 256; i++) t->byte_tok[i] = -1;
    return t;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_vocab; i++) free(t->owned_text[i]);
    free(t->owned_text);
    free(t->text);
    free(t->len);
    free(t->special);
    free(t->is_added);
    strmap_free(&t->vocab);
    u64map_free(&t->merges);
    free(t->replace_from);
    free(t->replace_to);
    free(t->prepend);
    free(t->metaspace);
    for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    free(t->steps);
    free(t->added);
    free(t->bucket_start);
    free(t->added_order);
    free(t);
}

static void alloc_vocab(Tokenizer *t, int n) {
    t->n_vocab = n;
    t->text = ld_xcalloc((size_t)n, sizeof(char *));
    t->owned_text = ld_xcalloc((size_t)n, sizeof(char *));
    t->len = ld_xcalloc((size_t)n, sizeof(uint32_t));
    t->special = ld_xcalloc((size_t)n, 1);
    t->is_added = ld_xcalloc((size_t)n, 1);
    strmap_init(&t->vocab, (size_t)n);
}

static void set_token(Tokenizer *t, int id, const char *s, size_t n) {
    free(t->owned_text[id]);
    if (t->byte_level) {
        t->owned_text[id] = bytelevel_demap(s, n, &t->len[id]);
    } else {
        t->owned_text[id] = ld_xmalloc(n + 1);
        memcpy(t->owned_text[id], s, n);
        t->owned_text[id][n] = 0;
        t->len[id] = (uint32_t)n;
    }
    t->text[id] = t->owned_text[id];
}

static void find_byte_tokens(Tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        t->byte_tok[b] = strmap_get(&t->vocab, s, 6, -1);
    }
}

static void add_merge(Tokenizer *t, const char *a, size_t na, const char *b, size_t nb, int rank) {
    char *ra = (char *)a, *rb = (char *)b;
    uint32_t la = (uint32_t)na, lb = (uint32_t)nb;
    if (t->byte_level) {
        ra = bytelevel_demap(a, na, &la);
        rb = bytelevel_demap(b, nb, &lb);
    }
    char *cat = ld_xmalloc(la + lb + 1);
    memcpy(cat, ra, la);
    memcpy(cat + la, rb, lb);
    int ia = strmap_get(&t->vocab, ra, la, -1), ib = strmap_get(&t->vocab, rb, lb, -1);
    int ic = strmap_get(&t->vocab, cat, la + lb, -1);
    if (ia >= 0 && ib >= 0 && ic >= 0) u64map_put(&t->merges, ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib, rank, ic);
    free(cat);
    if (t->byte_level) {
        free(ra);
        free(rb);
    }
}

typedef struct {
    uint8_t first;
    uint32_t len;
    int index;
} AddedKey;

// Groups added tokens by first byte, longest first, so the first hit at a position is the longest match.
static int cmp_added_key(const void *a, const void *b) {
    const AddedKey *x = a, *y = b;
    if (x->first != y->first) return x->first - y->first;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->index - y->index;
}

static void index_added(Tokenizer *t) {
    AddedKey *keys = ld_xmalloc(sizeof(AddedKey) * (size_t)(t->n_added + 1));
    int k = 0;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len) keys[k++] = (AddedKey){(uint8_t)t->added[i].content[0], t->added[i].len, i};
    qsort(keys, (size_t)k, sizeof(AddedKey), cmp_added_key);
    t->added_order = ld_xmalloc(sizeof(int) * (size_t)(k + 1));
    for (int i = 0; i < k; i++) t->added_order[i] = keys[i].index;
    t->bucket_start = ld_xcalloc(257, sizeof(int));
    for (int i = 0, b = 0; b <= 256; b++) {
        while (i < k && keys[i].first < b) i++;
        t->bucket_start[b] = i;
    }
    t->bucket_start[256] = k;
    free(keys);
}

// ---- loading from tokenizer.json -----------------------------------------------------------------------

static const char *json_str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static int json_bool(const cJSON *o, const char *k, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static int parse_normalizer(Tokenizer *t, const cJSON *n, const char *name) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = json_str(n, "type");
    if (!type) goto bad;
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(arr)) goto bad;
        for (const cJSON *c = arr->child; c; c = c->next)
            if (parse_normalizer(t, c, name)) return -1;
        return 0;
    }
    if (!strcmp(type, "NFC")) {
        t->nfc = 1;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *from = json_str(pat, "String"), *to = json_str(n, "content");
        if (!from || !to || !from[0]) {
            ld_set_error("%s: normalizer Replace: only plain-string patterns are supported", name);
            return -1;
        }
        free(t->replace_from);
        free(t->replace_to);
        t->replace_from = ld_xstrdup(from);
        t->replace_to = ld_xstrdup(to);
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        const char *p = json_str(n, "prepend");
        if (!p) goto bad;
        free(t->prepend);
        t->prepend = ld_xstrdup(p);
        return 0;
    }
    ld_set_error("%s: unsupported normalizer type '%s'", name, type);
    return -1;
bad:
    ld_set_error("%s: malformed normalizer", name);
    return -1;
}

static int parse_pretok(Tokenizer *t, const cJSON *p, const char *name) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = json_str(p, "type");
    if (!type) goto bad;
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(arr)) goto bad;
        for (const cJSON *c = arr->child; c; c = c->next)
            if (parse_pretok(t, c, name)) return -1;
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *re = json_str(pat, "Regex"), *lit = json_str(pat, "String"), *beh = json_str(p, "behavior");
        if ((!re && !lit) || !beh) goto bad;
        if (json_bool(p, "invert", 0)) {
            ld_set_error("%s: pre-tokenizer Split with invert is not supported", name);
            return -1;
        }
        SplitBehavior b;
        if (!strcmp(beh, "Isolated"))
            b = SPLIT_ISOLATED;
        else if (!strcmp(beh, "MergedWithPrevious"))
            b = SPLIT_MERGED_PREV;
        else if (!strcmp(beh, "MergedWithNext"))
            b = SPLIT_MERGED_NEXT;
        else if (!strcmp(beh, "Removed"))
            b = SPLIT_REMOVED;
        else {
            ld_set_error("%s: unsupported Split behavior '%s'", name, beh);
            return -1;
        }
        return add_step(t, re ? re : lit, re == NULL, b, name);
    }
    if (!strcmp(type, "Digits")) {
        return add_step(t, json_bool(p, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", 0, SPLIT_ISOLATED, name);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = json_str(p, "replacement"), *scheme = json_str(p, "prepend_scheme");
        if (!rep || !rep[0] || t->n_steps) {
            ld_set_error("%s: Metaspace needs a replacement and must come first among the pre-tokenizers", name);
            return -1;
        }
        free(t->metaspace);
        t->metaspace = ld_xstrdup(rep);
        if (scheme)
            t->metaspace_prepend = !strcmp(scheme, "always") ? 2 : !strcmp(scheme, "first") ? 1 : 0;
        else
            t->metaspace_prepend = json_bool(p, "add_prefix_space", 1) ? 2 : 0;  // files older than prepend_scheme
        if (json_bool(p, "split", 1)) return add_step(t, rep, 1, SPLIT_MERGED_NEXT, name);
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (json_bool(p, "use_regex", 1)) {
            if (add_step(t, k_gpt2_regex, 0, SPLIT_ISOLATED, name)) return -1;
        }
        if (json_bool(p, "add_prefix_space", 0)) {
            if (t->n_steps > (json_bool(p, "use_regex", 1) ? 1 : 0)) {
                ld_set_error("%s: ByteLevel add_prefix_space after another pre-tokenizer is not supported", name);
                return -1;
            }
            t->prefix_space = 1;
        }
        t->byte_level = 1;
        return 0;
    }
    ld_set_error("%s: unsupported pre-tokenizer type '%s'", name, type);
    return -1;
bad:
    ld_set_error("%s: malformed pre_tokenizer", name);
    return -1;
}

static int scan_decoder(Tokenizer *t, const cJSON *d) {
    if (!d || cJSON_IsNull(d)) return 0;
    const char *type = json_str(d, "type");
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        for (const cJSON *c = arr ? arr->child : NULL; c; c = c->next) scan_decoder(t, c);
    } else if (type && !strcmp(type, "Metaspace")) {
        const char *scheme = json_str(d, "prepend_scheme");
        t->strip_leading_space = scheme ? strcmp(scheme, "never") != 0 : json_bool(d, "add_prefix_space", 1);
    } else if (type && !strcmp(type, "Strip")) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "start");
        if (cJSON_IsNumber(s) && s->valueint > 0) t->strip_leading_space = 1;
    }
    return 0;
}

static int parse_post(Tokenizer *t, const cJSON *p, const char *name) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = json_str(p, "type");
    if (!type) return 0;
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(p, "processors");
        for (const cJSON *c = arr ? arr->child : NULL; c; c = c->next)
            if (parse_post(t, c, name)) return -1;
        return 0;
    }
    if (strcmp(type, "TemplateProcessing")) return 0;  // ByteLevel post-processing only trims offsets
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    int seen_seq = 0;
    for (const cJSON *it = single ? single->child : NULL; it; it = it->next) {
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const char *id = json_str(st, "id");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(specials, id ? id : ""), "ids");
        for (const cJSON *x = ids ? ids->child : NULL; x; x = x->next) {
            if (!cJSON_IsNumber(x) || x->valueint < 0 || x->valueint >= t->n_vocab) {
                ld_set_error("%s: post_processor special token '%s' has a bad id", name, id ? id : "?");
                return -1;
            }
            if (!seen_seq && t->n_prefix < 4) t->prefix_ids[t->n_prefix++] = x->valueint;
            if (seen_seq && t->n_suffix < 4) t->suffix_ids[t->n_suffix++] = x->valueint;
        }
    }
    return 0;
}

Tokenizer *tok_load_hf_json(const char *json, size_t len, const char *name) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        ld_set_error("%s: not valid JSON", name);
        cJSON_Delete(root);
        return NULL;
    }
    Tokenizer *t = tok_new();
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = json_str(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!model || !cJSON_IsObject(vocab)) {
        ld_set_error("%s: missing model.vocab", name);
        goto fail;
    }
    if (mtype && strcmp(mtype, "BPE")) {
        ld_set_error("%s: unsupported tokenizer model type '%s' (BPE is supported)", name, mtype);
        goto fail;
    }
    const char *csp = json_str(model, "continuing_subword_prefix"), *eow = json_str(model, "end_of_word_suffix");
    if ((csp && csp[0]) || (eow && eow[0])) {
        ld_set_error("%s: BPE with subword prefixes/suffixes is not supported", name);
        goto fail;
    }
    if (parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), name)) goto fail;
    if (parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), name)) goto fail;
    t->byte_fallback = json_bool(model, "byte_fallback", 0);
    t->ignore_merges = json_bool(model, "ignore_merges", 0);
    t->fuse_unk = json_bool(model, "fuse_unk", 0);
    // vocabulary size: the largest id among model vocab and added tokens
    int max_id = -1;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e7) {
            ld_set_error("%s: vocab entry '%s' has a bad id", name, v->string ? v->string : "?");
            goto fail;
        }
        if (v->valueint > max_id) max_id = v->valueint;
    }
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e7 || !json_str(a, "content")) {
            ld_set_error("%s: malformed added_tokens entry", name);
            goto fail;
        }
        if (id->valueint > max_id) max_id = id->valueint;
    }
    if (max_id < 0) {
        ld_set_error("%s: empty vocabulary", name);
        goto fail;
    }
    alloc_vocab(t, max_id + 1);
    for (const cJSON *v = vocab->child; v; v = v->next) {
        set_token(t, v->valueint, v->string, strlen(v->string));
        strmap_put(&t->vocab, t->text[v->valueint], t->len[v->valueint], v->valueint);
    }
    // merges: "a b" strings (older files) or [a, b] pairs
    int n_merges = cJSON_GetArraySize(merges);
    u64map_init(&t->merges, (size_t)n_merges);
    int rank = 0;
    for (const cJSON *m = merges ? merges->child : NULL; m; m = m->next, rank++) {
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring, *sp = strchr(s + (s[0] == ' ' ? 1 : 0), ' ');
            if (!sp) {
                ld_set_error("%s: merge %d ('%s') is not 'a b'", name, rank, s);
                goto fail;
            }
            add_merge(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            const char *a = m->child->valuestring, *b = m->child->next->valuestring;
            add_merge(t, a, strlen(a), b, strlen(b), rank);
        } else {
            ld_set_error("%s: merge %d is malformed", name, rank);
            goto fail;
        }
    }
    const char *unk = json_str(model, "unk_token");
    if (unk) t->unk_id = strmap_get(&t->vocab, unk, (uint32_t)strlen(unk), -1);
    // added tokens are stored as their literal text (never byte-level mapped)
    t->n_added = cJSON_GetArraySize(added);
    t->added = ld_xcalloc((size_t)t->n_added + 1, sizeof(AddedToken));
    int k = 0;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next, k++) {
        int id = cJSON_GetObjectItemCaseSensitive(a, "id")->valueint;
        const char *c = json_str(a, "content");
        if (t->is_added[id]) {  // a second entry would free the text the first one points to
            ld_set_error("%s: added token id %d appears twice in added_tokens", name, id);
            goto fail;
        }
        free(t->owned_text[id]);
        t->owned_text[id] = ld_xstrdup(c);
        t->text[id] = t->owned_text[id];
        t->len[id] = (uint32_t)strlen(c);
        t->special[id] = (uint8_t)json_bool(a, "special", 0);
        t->is_added[id] = 1;
        t->added[k] = (AddedToken){t->text[id], t->len[id], id, t->special[id]};
    }
    for (int i = 0; i < t->n_vocab; i++)
        if (!t->text[i]) {  // holes in the id space decode to nothing
            t->owned_text[i] = ld_xstrdup("");
            t->text[i] = t->owned_text[i];
        }
    index_added(t);
    find_byte_tokens(t);
    if (parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), name)) goto fail;
    scan_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (t->n_prefix) t->bos_id = t->prefix_ids[0];
    cJSON_Delete(root);
    return t;
fail:
    cJSON_Delete(root);
    tok_free(t);
    return NULL;
}

Tokenizer *tok_load_hf_file(const char *path) {
    size_t n;
    char *s = ld_read_file(path, &n);
    if (!s) return NULL;
    Tokenizer *t = tok_load_hf_json(s, n, path);
    free(s);
    return t;
}

// ---- loading from GGUF ---------------------------------------------------------------------------------

typedef struct {
    float score;
    int id;
} ScoreIdx;
static int cmp_score_desc(const void *a, const void *b) {
    float x = ((const ScoreIdx *)a)->score, y = ((const ScoreIdx *)b)->score;
    return x > y ? -1 : x < y ? 1 : 0;
}

Tokenizer *tok_load_gguf(const Gguf *g) {
    const char *name = g->path ? g->path : "gguf";
    char *model = gguf_get_str(g, "tokenizer.ggml.model");
    const GgufKv *toks = gguf_get(g, "tokenizer.ggml.tokens");
    const GgufKv *types = gguf_get(g, "tokenizer.ggml.token_type");
    const GgufKv *scores = gguf_get(g, "tokenizer.ggml.scores");
    const GgufKv *merges = gguf_get(g, "tokenizer.ggml.merges");
    Tokenizer *t = tok_new();
    if (!model || !toks || toks->type != GGUF_ARRAY || toks->arr_type != GGUF_STRING || !toks->arr_len || toks->arr_len > 10000000) {
        ld_set_error("%s: GGUF has no usable tokenizer (tokenizer.ggml.model / tokens missing)", name);
        goto fail;
    }
    int n = (int)toks->arr_len;
    if ((types && (types->type != GGUF_ARRAY || types->arr_len != toks->arr_len || types->arr_type == GGUF_STRING)) ||
        (scores && (scores->type != GGUF_ARRAY || scores->arr_len != toks->arr_len || scores->arr_type == GGUF_STRING))) {
        ld_set_error("%s: tokenizer.ggml.token_type/scores length differs from tokens", name);
        goto fail;
    }
    if (!strcmp(model, "gpt2")) {
        t->byte_level = 1;
        t->ignore_merges = 0;
    } else if (!strcmp(model, "llama")) {
        t->byte_level = 0;
        t->byte_fallback = 1;
        t->replace_from = ld_xstrdup(" ");
        t->replace_to = ld_xstrdup("\xE2\x96\x81");
        if (gguf_get_int(g, "tokenizer.ggml.add_space_prefix", 1)) {
            t->prepend = ld_xstrdup("\xE2\x96\x81");
            t->strip_leading_space = 1;
        }
    } else {
        ld_set_error("%s: unsupported GGUF tokenizer model '%s' (gpt2 and llama are supported)", name, model);
        goto fail;
    }
    alloc_vocab(t, n);
    int n_added = 0;
    for (int i = 0; i < n; i++) {
        double type = types ? gguf_arr_num(types, (uint64_t)i) : 1;
        if (!(type >= 0 && type <= 6)) {  // llama.cpp's token types are 0..6; past int's range the cast itself is undefined
            ld_set_error("%s: tokenizer.ggml.token_type[%d] is %g, not a token type (0 to 6)", name, i, type);
            goto fail;
        }
        int ty = (int)type;
        GgufStr s = toks->arr_strs[i];
        if (ty == 3 || ty == 4 || ty == 2) {  // control, user-defined, unknown: literal text, matched whole
            free(t->owned_text[i]);
            t->owned_text[i] = ld_xmalloc(s.len + 1);
            memcpy(t->owned_text[i], s.ptr, s.len);
            t->owned_text[i][s.len] = 0;
            t->text[i] = t->owned_text[i];
            t->len[i] = (uint32_t)s.len;
            t->is_added[i] = 1;
            t->special[i] = ty != 4;
            n_added++;
        } else {
            set_token(t, i, s.ptr, s.len);
        }
        strmap_put(&t->vocab, t->text[i], t->len[i], i);
    }
    t->added = ld_xcalloc((size_t)n_added + 1, sizeof(AddedToken));
    for (int i = 0; i < n; i++)
        if (t->is_added[i] && t->len[i]) t->added[t->n_added++] = (AddedToken){t->text[i], t->len[i], i, t->special[i]};
    index_added(t);
    find_byte_tokens(t);
    if (t->byte_level) {
        if (!merges || merges->type != GGUF_ARRAY || merges->arr_type != GGUF_STRING) {
            ld_set_error("%s: gpt2 tokenizer without tokenizer.ggml.merges", name);
            goto fail;
        }
        u64map_init(&t->merges, merges->arr_len);
        for (uint64_t r = 0; r < merges->arr_len; r++) {
            GgufStr s = merges->arr_strs[r];
            const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
            if (!sp) continue;
            add_merge(t, s.ptr, (size_t)(sp - s.ptr), sp + 1, s.len - (size_t)(sp - s.ptr) - 1, (int)r);
        }
        char *pre = gguf_get_str(g, "tokenizer.ggml.pre");
        const char *p = pre ? pre : "default";
        int rc;
        if (!strcmp(p, "llama3") || !strcmp(p, "llama-bpe") || !strcmp(p, "llama-v3"))
            rc = add_step(t, k_llama3_regex, 0, SPLIT_ISOLATED, name);
        else if (!strcmp(p, "qwen2") || !strcmp(p, "qwen35"))
            rc = add_step(t, k_qwen2_regex, 0, SPLIT_ISOLATED, name);
        else if (!strcmp(p, "smollm") || !strcmp(p, "starcoder") || !strcmp(p, "refact"))
            rc = add_step(t, "\\p{N}", 0, SPLIT_ISOLATED, name) || add_step(t, k_gpt2_regex, 0, SPLIT_ISOLATED, name);
        else
            rc = add_step(t, k_gpt2_regex, 0, SPLIT_ISOLATED, name);
        free(pre);
        if (rc) goto fail;
    } else {
        // SentencePiece: a pair merges when the concatenation is a token; higher score merges first.
        ScoreIdx *order = ld_xmalloc(sizeof(ScoreIdx) * (size_t)n);
        for (int i = 0; i < n; i++) order[i] = (ScoreIdx){scores ? (float)gguf_arr_num(scores, (uint64_t)i) : 0.0f, i};
        qsort(order, (size_t)n, sizeof(ScoreIdx), cmp_score_desc);
        u64map_init(&t->merges, (size_t)n * 4);
        for (int r = 0, rank = 0; r < n; r++) {
            if (r > 0 && order[r].score != order[r - 1].score) rank = r;  // equal scores share a rank
            int id = order[r].id;
            if (t->is_added[id]) continue;
            const char *s = t->text[id];
            uint32_t L = t->len[id];
            for (uint32_t cut = 1; cut < L; cut++) {
                if (((uint8_t)s[cut] & 0xC0) == 0x80) continue;  // split only at character boundaries
                int a = strmap_get(&t->vocab, s, cut, -1), b = strmap_get(&t->vocab, s + cut, L - cut, -1);
                if (a >= 0 && b >= 0) u64map_put(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, rank, id);
            }
        }
        free(order);
    }
    t->bos_id = (int)gguf_get_int(g, "tokenizer.ggml.bos_token_id", -1);
    t->eos_id = (int)gguf_get_int(g, "tokenizer.ggml.eos_token_id", -1);
    t->unk_id = (int)gguf_get_int(g, "tokenizer.ggml.unknown_token_id", -1);
    if (t->bos_id >= n || t->eos_id >= n || t->unk_id >= n) {
        ld_set_error("%s: tokenizer special token id out of range", name);
        goto fail;
    }
    if (t->bos_id >= 0 && gguf_get_int(g, "tokenizer.ggml.add_bos_token", !t->byte_level)) t->prefix_ids[t->n_prefix++] = t->bos_id;
    if (t->eos_id >= 0 && gguf_get_int(g, "tokenizer.ggml.add_eos_token", 0)) t->suffix_ids[t->n_suffix++] = t->eos_id;
    free(model);
    return t;
fail:
    free(model);
    tok_free(t);
    return NULL;
}

// ---- encoding ------------------------------------------------------------------------------------------

typedef struct {
    int *v;
    int n, cap;
} IntVec;
static void iv_push(IntVec *iv, int x) {
    if (iv->n == iv->cap) iv->v = ld_xrealloc(iv->v, sizeof(int) * (size_t)(iv->cap = iv->cap ? iv->cap * 2 : 64));
    iv->v[iv->n++] = x;
}

typedef struct {
    uint64_t key;  // rank << 32 | left position: smallest first
    int left, right, id_a, id_b, new_id;
} HeapItem;

typedef struct {
    HeapItem *h;
    int n, cap;
} Heap;

static void heap_push(Heap *hp, HeapItem it) {
    if (hp->n == hp->cap) hp->h = ld_xrealloc(hp->h, sizeof(HeapItem) * (size_t)(hp->cap = hp->cap ? hp->cap * 2 : 64));
    int i = hp->n++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (hp->h[p].key <= it.key) break;
        hp->h[i] = hp->h[p];
        i = p;
    }
    hp->h[i] = it;
}
static HeapItem heap_pop(Heap *hp) {
    HeapItem top = hp->h[0], last = hp->h[--hp->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= hp->n) break;
        if (c + 1 < hp->n && hp->h[c + 1].key < hp->h[c].key) c++;
        if (last.key <= hp->h[c].key) break;
        hp->h[i] = hp->h[c];
        i = c;
    }
    if (hp->n) hp->h[i] = last;
    return top;
}

typedef struct {
    int *id, *prev, *next, *pos;
    int n, cap;
} Symbols;

static void sym_reserve(Symbols *s, int n) {
    if (n <= s->cap) return;
    s->cap = n;
    s->id = ld_xrealloc(s->id, sizeof(int) * (size_t)n);
    s->prev = ld_xrealloc(s->prev, sizeof(int) * (size_t)n);
    s->next = ld_xrealloc(s->next, sizeof(int) * (size_t)n);
    s->pos = ld_xrealloc(s->pos, sizeof(int) * (size_t)n);
}

static void try_pair(const Tokenizer *t, Symbols *s, Heap *hp, int l) {
    if (l < 0) return;
    int r = s->next[l];
    if (r < 0) return;
    int rank, nid;
    uint64_t key = ((uint64_t)(uint32_t)s->id[l] << 32) | (uint32_t)s->id[r];
    if (!u64map_get(&t->merges, key, &rank, &nid)) return;
    heap_push(hp, (HeapItem){((uint64_t)(uint32_t)rank << 32) | (uint32_t)s->pos[l], l, r, s->id[l], s->id[r], nid});
}

// BPE over one pre-tokenized piece, appending ids.
static void bpe_piece(const Tokenizer *t, const char *p, int n, IntVec *out, Symbols *s, Heap *hp) {
    if (n <= 0) return;
    if (t->ignore_merges) {
        int id = strmap_get(&t->vocab, p, (uint32_t)n, -1);
        if (id >= 0) {
            iv_push(out, id);
            return;
        }
    }
    sym_reserve(s, n * 1 + 4);
    s->n = 0;
    int prev_unk = 0;
    for (int i = 0; i < n;) {
        int cl = t->byte_level ? 1 : ld_utf8_char_len((const uint8_t *)p + i, (size_t)(n - i));
        if (cl == 0) cl = 1;
        int id = strmap_get(&t->vocab, p + i, (uint32_t)cl, -1);
        if (id >= 0 && !t->is_added[id]) {
            s->id[s->n] = id;
            s->pos[s->n] = i;
            s->n++;
            prev_unk = 0;
        } else {
            int all = t->byte_fallback;
            for (int b = 0; b < cl && all; b++) all = t->byte_tok[(uint8_t)p[i + b]] >= 0;
            if (all) {
                for (int b = 0; b < cl; b++) {
                    s->id[s->n] = t->byte_tok[(uint8_t)p[i + b]];
                    s->pos[s->n] = i + b;
                    s->n++;
                }
                prev_unk = 0;
            } else if (t->unk_id >= 0 && !(t->fuse_unk && prev_unk)) {
                s->id[s->n] = t->unk_id;
                s->pos[s->n] = i;
                s->n++;
                prev_unk = 1;
            }
        }
        i += cl;
    }
    for (int i = 0; i < s->n; i++) {
        s->prev[i] = i - 1;
        s->next[i] = i + 1 < s->n ? i + 1 : -1;
    }
    hp->n = 0;
    for (int i = 0; i + 1 < s->n; i++) try_pair(t, s, hp, i);
    while (hp->n) {
        HeapItem it = heap_pop(hp);
        int l = it.left, r = it.right;
        // stale entries: a side was merged away or changed since the pair was queued
        if (s->id[l] != it.id_a || s->next[l] != r || s->id[r] != it.id_b) continue;
        s->id[l] = it.new_id;
        s->id[r] = -1;
        s->next[l] = s->next[r];
        if (s->next[r] >= 0) s->prev[s->next[r]] = l;
        try_pair(t, s, hp, s->prev[l]);
        try_pair(t, s, hp, l);
    }
    for (int i = 0; i >= 0 && i < s->n; i = s->next[i]) iv_push(out, s->id[i]);
}

typedef struct {
    int start, end;
} Span;
typedef struct {
    Span *v;
    int n, cap;
} SpanVec;
static void sv_push(SpanVec *sv, int a, int b) {
    if (a >= b) return;
    if (sv->n == sv->cap) sv->v = ld_xrealloc(sv->v, sizeof(Span) * (size_t)(sv->cap = sv->cap ? sv->cap * 2 : 32));
    sv->v[sv->n++] = (Span){a, b};
}

// Splits every span of buf by one regex step.
static void split_step(const PreStep *st, const char *buf, SpanVec *in, SpanVec *out, pcre2_match_data *md) {
    out->n = 0;
    for (int k = 0; k < in->n; k++) {
        int a = in->v[k].start, b = in->v[k].end, last = a;
        PCRE2_SIZE off = 0;
        while ((int)off < b - a) {
            int rc = pcre2_match(st->re, (PCRE2_SPTR)(buf + a), (PCRE2_SIZE)(b - a), off, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc < 0) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            int ms = a + (int)ov[0], me = a + (int)ov[1];
            if (me == ms) {  // empty match: step one character on
                int cl = ld_utf8_char_len((const uint8_t *)buf + ms, (size_t)(b - ms));
                off = ov[1] + (PCRE2_SIZE)(cl ? cl : 1);
                continue;
            }
            switch (st->behavior) {
                case SPLIT_ISOLATED:
                    sv_push(out, last, ms);
                    sv_push(out, ms, me);
                    last = me;
                    break;
                case SPLIT_MERGED_PREV:
                    sv_push(out, last, me);
                    last = me;
                    break;
                case SPLIT_MERGED_NEXT:
                    sv_push(out, last, ms);
                    last = ms;
                    break;
                case SPLIT_REMOVED:
                    sv_push(out, last, ms);
                    last = me;
                    break;
            }
            off = ov[1];
        }
        sv_push(out, last, b);
    }
}

// Normalises one text segment into a fresh buffer.
static char *normalize(const Tokenizer *t, const char *s, size_t n, size_t *out_len) {
    char *cur = ld_xmalloc(n + 1);
    memcpy(cur, s, n);
    cur[n] = 0;
    size_t len = n;
    if (t->nfc && len) {
        utf8proc_uint8_t *r = NULL;
        utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)cur, (utf8proc_ssize_t)len, &r, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (rl >= 0) {
            free(cur);
            cur = (char *)r;
            len = (size_t)rl;
        }
    }
    if (t->replace_from) {
        size_t fl = strlen(t->replace_from), tl = strlen(t->replace_to), cnt = 0;
        for (size_t i = 0; i + fl <= len; i++)
            if (!memcmp(cur + i, t->replace_from, fl)) cnt++, i += fl - 1;
        if (cnt) {
            char *o = ld_xmalloc(len + cnt * tl + 1);
            size_t k = 0;
            for (size_t i = 0; i < len;) {
                if (i + fl <= len && !memcmp(cur + i, t->replace_from, fl)) {
                    memcpy(o + k, t->replace_to, tl);
                    k += tl;
                    i += fl;
                } else {
                    o[k++] = cur[i++];
                }
            }
            o[k] = 0;
            free(cur);
            cur = o;
            len = k;
        }
    }
    if (t->prepend && len) {
        size_t pl = strlen(t->prepend);
        char *o = ld_xmalloc(len + pl + 1);
        memcpy(o, t->prepend, pl);
        memcpy(o + pl, cur, len + 1);
        free(cur);
        cur = o;
        len += pl;
    }
    *out_len = len;
    return cur;
}

// Spaces to the Metaspace replacement, and the replacement prepended as the scheme says.
static char *apply_metaspace(const Tokenizer *t, char *buf, size_t *len, int first) {
    size_t rl = strlen(t->metaspace), spaces = 0;
    for (size_t i = 0; i < *len; i++) spaces += buf[i] == ' ';
    // no prepend when the (replaced) text already starts with the replacement
    int prepend = (t->metaspace_prepend == 2 || (t->metaspace_prepend == 1 && first)) && *len && buf[0] != ' ' &&
                  !(*len >= rl && !memcmp(buf, t->metaspace, rl));
    char *o = ld_xmalloc(*len + spaces * rl + rl + 1);
    size_t k = 0;
    if (prepend) memcpy(o, t->metaspace, rl), k = rl;
    for (size_t i = 0; i < *len; i++) {
        if (buf[i] == ' ')
            memcpy(o + k, t->metaspace, rl), k += rl;
        else
            o[k++] = buf[i];
    }
    o[k] = 0;
    free(buf);
    *len = k;
    return o;
}

// One text segment between added tokens; `first` when it starts the input (Metaspace's "first" scheme).
static void encode_text(const Tokenizer *t, const char *s, size_t n, int first, IntVec *out) {
    if (!n) return;
    size_t len;
    char *buf = normalize(t, s, n, &len);
    if (t->metaspace) buf = apply_metaspace(t, buf, &len, first);
    if (t->prefix_space && buf[0] != ' ') {  // ByteLevel(add_prefix_space)
        char *o = ld_xmalloc(len + 2);
        o[0] = ' ';
        memcpy(o + 1, buf, len + 1);
        free(buf);
        buf = o;
        len++;
    }
    SpanVec a = {0}, b = {0};
    sv_push(&a, 0, (int)len);
    pcre2_match_data *md = t->n_steps ? pcre2_match_data_create(4, NULL) : NULL;
    for (int k = 0; k < t->n_steps; k++) {
        split_step(&t->steps[k], buf, &a, &b, md);
        SpanVec tmp = a;
        a = b;
        b = tmp;
    }
    Symbols sy = {0};
    Heap hp = {0};
    for (int i = 0; i < a.n; i++) bpe_piece(t, buf + a.v[i].start, a.v[i].end - a.v[i].start, out, &sy, &hp);
    free(sy.id);
    free(sy.prev);
    free(sy.next);
    free(sy.pos);
    free(hp.h);
    if (md) pcre2_match_data_free(md);
    free(a.v);
    free(b.v);
    free(buf);
}

static int in_spans(size_t pos, const size_t *spans, int n_spans) {
    for (int i = 0; i < n_spans; i++)
        if (pos >= spans[2 * i] && pos < spans[2 * i + 1]) return 1;
    return 0;
}

int tok_encode_protected(const Tokenizer *t, const char *text, size_t len, int flags, const size_t *spans, int n_spans, int **out) {
    size_t n;
    char *s = ld_utf8_repair(text, len, &n);
    IntVec iv = {0};
    if (flags & TOK_ADD_SPECIAL)
        for (int i = 0; i < t->n_prefix; i++) iv_push(&iv, t->prefix_ids[i]);
    size_t seg = 0;
    for (size_t i = 0; i < n;) {
        const AddedToken *hit = NULL;
        int b = (uint8_t)s[i];
        for (int k = t->bucket_start[b]; k < t->bucket_start[b + 1]; k++) {
            const AddedToken *a = &t->added[t->added_order[k]];
            if (a->special && (!(flags & TOK_PARSE_SPECIAL) || in_spans(i, spans, n_spans))) continue;
            if (a->len <= n - i && !memcmp(s + i, a->content, a->len)) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        encode_text(t, s + seg, i - seg, seg == 0, &iv);
        iv_push(&iv, hit->id);
        i += hit->len;
        seg = i;
    }
    encode_text(t, s + seg, n - seg, seg == 0, &iv);
    if (flags & TOK_ADD_SPECIAL)
        for (int i = 0; i < t->n_suffix; i++) iv_push(&iv, t->suffix_ids[i]);
    free(s);
    if (!iv.v) iv.v = ld_xmalloc(sizeof(int));
    *out = iv.v;
    return iv.n;
}

int tok_encode(const Tokenizer *t, const char *text, size_t len, int flags, int **out) {
    return tok_encode_protected(t, text, len, flags, NULL, 0, out);
}

// ---- decoding ------------------------------------------------------------------------------------------

int tok_token_bytes(const Tokenizer *t, int id, char *buf, int cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    const char *s = t->text[id];
    int n = (int)t->len[id], k = 0;
    if (t->byte_level) {
        if (n > cap) n = cap;
        memcpy(buf, s, (size_t)n);
        return n;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_tok[b] == id) {
            if (cap > 0) buf[k++] = (char)b;
            return k;
        }
    for (int i = 0; i < n && k < cap;) {  // ▁ -> ' '
        if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
            buf[k++] = ' ';
            i += 3;
        } else {
            buf[k++] = s[i++];
        }
    }
    return k;
}

char *tok_decode(const Tokenizer *t, const int *ids, int n, int skip_special) {
    size_t cap = 64, len = 0;
    char *raw = ld_xmalloc(cap);
    char tmp[1024];
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) continue;
        if (skip_special && t->special[ids[i]]) continue;
        int k = t->len[ids[i]] * 3 + 8 > sizeof tmp ? 0 : tok_token_bytes(t, ids[i], tmp, (int)sizeof tmp);
        if (len + (size_t)k + 1 > cap) raw = ld_xrealloc(raw, cap = (len + (size_t)k + 1) * 2);
        memcpy(raw + len, tmp, (size_t)k);
        len += (size_t)k;
    }
    size_t start = (t->strip_leading_space && len && raw[0] == ' ') ? 1 : 0, olen;
    char *out = ld_utf8_repair(raw + start, len - start, &olen);
    free(raw);
    return out;
}

int tok_vocab_size(const Tokenizer *t) { return t->n_vocab; }
int tok_bos(const Tokenizer *t) { return t->bos_id; }
int tok_eos(const Tokenizer *t) { return t->eos_id; }
int tok_is_special(const Tokenizer *t, int id) { return id >= 0 && id < t->n_vocab && t->special[id]; }
const char *tok_text(const Tokenizer *t, int id) { return id >= 0 && id < t->n_vocab ? t->text[id] : ""; }

int tok_find(const Tokenizer *t, const char *text) {
    uint32_t n = (uint32_t)strlen(text);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, text, n)) return t->added[i].id;
    return strmap_get(&t->vocab, text, n, -1);
}

void tok_set_bos_eos(Tokenizer *t, int bos, int eos) {
    if (bos >= 0 && bos < t->n_vocab) t->bos_id = bos;
    if (eos >= 0 && eos < t->n_vocab) t->eos_id = eos;
}
