// llamaduo tokenize: JSONL {"text": ..} -> {"ids": [..]}, or with --decode the reverse.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf.h"
#include "util.h"

static const char *k_help =
    "usage: llamaduo tokenize (--model PATH | --tokenizer tokenizer.json) [options]\n\n"
    "Reads JSONL from --input FILE (default stdin) and writes JSONL to stdout.\n"
    "  --text TEXT       tokenize this one text instead of reading JSONL\n"
    "  --decode          read {\"ids\": [..]} and write {\"text\": ..}\n"
    "  --special         parse special-token text (e.g. <|im_start|>) into special tokens\n"
    "  --add-special     add the tokenizer's BOS/EOS as its post-processor declares\n";

static Tokenizer *load_tokenizer(const char *model, const char *tokjson) {
    if (tokjson) return tok_load_hf_file(tokjson);
    if (ld_is_dir(model)) {
        char *p = ld_path_join(model, "tokenizer.json");
        Tokenizer *t = tok_load_hf_file(p);
        free(p);
        return t;
    }
    Gguf g;  // a GGUF's tokenizer without loading its weights
    if (gguf_open(model, &g)) return NULL;
    Tokenizer *t = tok_load_gguf(&g);
    gguf_close(&g);
    return t;
}

static void emit_ids(const int *ids, int n) {
    fputs("{\"ids\":[", stdout);
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    fputs("]}\n", stdout);
}

int cmd_tokenize(int argc, char **argv) {
    Args a = {argc, argv, 1, "tokenize"};
    const char *model = NULL, *tokjson = NULL, *input = NULL, *text = NULL;
    int decode = 0, flags = 0;
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("%s", k_help);
            return 0;
        }
        if (arg_value(&a, "--model", &model) || arg_value(&a, "--tokenizer", &tokjson) || arg_value(&a, "--input", &input) ||
            arg_value(&a, "--text", &text))
            continue;
        if (arg_flag(&a, "--decode"))
            decode = 1;
        else if (arg_flag(&a, "--special"))
            flags |= TOK_PARSE_SPECIAL;
        else if (arg_flag(&a, "--add-special"))
            flags |= TOK_ADD_SPECIAL;
        else
            arg_unknown(&a);
    }
    if (!model == !tokjson) die("tokenize needs exactly one of --model PATH or --tokenizer tokenizer.json");
    Tokenizer *t = load_tokenizer(model, tokjson);
    if (!t) die("%s", ld_last_error());
    if (text) {
        int *ids, n = tok_encode(t, text, strlen(text), flags, &ids);
        emit_ids(ids, n);
        free(ids);
        tok_free(t);
        return 0;
    }
    FILE *f = input ? fopen(input, "r") : stdin;
    if (!f) die("%s: cannot open", input);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    const char *name = input ? input : "stdin";
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        cJSON *tx = cJSON_GetObjectItemCaseSensitive(j, "text"), *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
        if (!decode && cJSON_IsString(tx)) {
            int *out, n = tok_encode(t, tx->valuestring, strlen(tx->valuestring), flags, &out);
            emit_ids(out, n);
            free(out);
        } else if (decode && cJSON_IsArray(ids)) {
            int n = cJSON_GetArraySize(ids), k = 0, ok = 1;
            int *v = ld_xmalloc(sizeof(int) * (size_t)(n + 1));
            for (cJSON *x = ids->child; x; x = x->next) {
                ok &= cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < tok_vocab_size(t);
                v[k++] = ok ? x->valueint : 0;
            }
            if (ok) {
                char *s = tok_decode(t, v, n, 0);
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "text", s);
                char *js = cJSON_PrintUnformatted(o);
                printf("%s\n", js);
                free(js), free(s);
                cJSON_Delete(o);
            } else {
                fprintf(stderr, "llamaduo: error: %s:%d: ids must be integers in [0, %d)\n", name, lineno, tok_vocab_size(t));
                rc = 1;
            }
            free(v);
        } else {
            fprintf(stderr, "llamaduo: error: %s:%d: expected %s\n", name, lineno, decode ? "{\"ids\": [..]}" : "{\"text\": \"..\"}");
            rc = 1;
        }
        cJSON_Delete(j);
        if (rc) break;
    }
    free(line);
    if (input) fclose(f);
    tok_free(t);
    return rc;
}
