#include "json_constraint.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { T_OBJECT = 1, T_ARRAY = 2, T_STRING = 4, T_NUMBER = 8, T_INTEGER = 16, T_BOOLEAN = 32, T_NULL = 64, T_ALL = 127 };
#define MAX_PROPS 64
#define MAX_DEPTH 48
#define MAX_WS 64  // consecutive whitespace bytes: a model cannot run away in blank lines

struct JsonSchema {
    unsigned types;
    int n_props;  // declared properties: the only keys an object takes
    char **prop_names;
    JsonSchema **props;
    uint64_t required;
    JsonSchema *items;  // NULL: any value
    int min_items, max_items;  // max -1: none
    int n_enum;  // enum / const: the value is one of these JSON texts, byte for byte
    char **enum_texts;
    int min_length, max_length;  // strings, in characters (max -1: none)
};

static const JsonSchema k_any = {T_ALL, 0, NULL, NULL, 0, NULL, 0, -1, 0, NULL, 0, -1};

void json_schema_free(JsonSchema *s) {
    if (!s) return;
    for (int i = 0; i < s->n_props; i++) free(s->prop_names[i]), json_schema_free(s->props[i]);
    for (int i = 0; i < s->n_enum; i++) free(s->enum_texts[i]);
    free(s->prop_names), free(s->props), free(s->enum_texts);
    json_schema_free(s->items);
    free(s);
}

static unsigned type_bit(const char *t) {
    static const char *names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(t, names[i])) return 1u << i;
    return 0;
}

static JsonSchema *compile(const cJSON *n, const char *where, int depth) {
    if (depth > MAX_DEPTH) {
        ld_set_error("schema nests deeper than %d levels", MAX_DEPTH);
        return NULL;
    }
    JsonSchema *s = ld_xcalloc(1, sizeof *s);
    s->max_items = s->max_length = -1;
    if (cJSON_IsTrue(n)) {
        s->types = T_ALL;
        return s;
    }
    if (!cJSON_IsObject(n)) {
        ld_set_error("schema at %s is not an object", where);
        goto fail;
    }
    static const char *ignored[] = {"title", "description", "$schema", "$id", "default", "examples", "$comment", NULL};
    char path[512];
    for (const cJSON *k = n->child; k; k = k->next) {
        const char *key = k->string;
        int skip = 0;
        for (int i = 0; ignored[i]; i++) skip |= !strcmp(key, ignored[i]);
        if (skip) continue;
        if (!strcmp(key, "type")) {
            for (const cJSON *t = cJSON_IsArray(k) ? k->child : k; t; t = cJSON_IsArray(k) ? t->next : NULL) {
                unsigned b = cJSON_IsString(t) ? type_bit(t->valuestring) : 0;
                if (!b) {
                    ld_set_error("schema at %s: unknown type %s", where, cJSON_IsString(t) ? t->valuestring : "(not a string)");
                    goto fail;
                }
                s->types |= b;
            }
        } else if (!strcmp(key, "properties")) {
            if (!cJSON_IsObject(k) || cJSON_GetArraySize(k) > MAX_PROPS) {
                ld_set_error("schema at %s: properties must be an object of at most %d entries", where, MAX_PROPS);
                goto fail;
            }
            int np = cJSON_GetArraySize(k);
            s->prop_names = ld_xcalloc((size_t)np + 1, sizeof(char *));
            s->props = ld_xcalloc((size_t)np + 1, sizeof(JsonSchema *));
            for (const cJSON *p = k->child; p; p = p->next) {
                snprintf(path, sizeof path, "%s.%s", where, p->string);
                JsonSchema *sub = compile(p, path, depth + 1);
                if (!sub) goto fail;
                // the key as it appears between the quotes: JSON-escaped
                cJSON *str = cJSON_CreateString(p->string);
                char *txt = cJSON_PrintUnformatted(str);
                cJSON_Delete(str);
                size_t L = strlen(txt);
                memmove(txt, txt + 1, L - 2);
                txt[L - 2] = 0;
                s->prop_names[s->n_props] = txt;
                s->props[s->n_props++] = sub;
            }
        } else if (!strcmp(key, "required") || !strcmp(key, "additionalProperties") || !strcmp(key, "minItems") ||
                   !strcmp(key, "maxItems") || !strcmp(key, "minLength") || !strcmp(key, "maxLength")) {
            continue;  // read below, once properties are known
        } else if (!strcmp(key, "items")) {
            snprintf(path, sizeof path, "%s[]", where);
            if (!(s->items = compile(k, path, depth + 1))) goto fail;
        } else if (!strcmp(key, "enum") || !strcmp(key, "const")) {
            if (s->enum_texts) {  // a second enum or const (or both): their values would not fit the first's list
                ld_set_error("schema at %s: give enum or const once, not both or twice", where);
                goto fail;
            }
            const cJSON *vals = !strcmp(key, "const") ? NULL : k;
            if (vals && (!cJSON_IsArray(vals) || !cJSON_GetArraySize(vals) || cJSON_GetArraySize(vals) > 64)) {
                ld_set_error("schema at %s: enum must list 1 to 64 values", where);
                goto fail;
            }
            int nv = vals ? cJSON_GetArraySize(vals) : 1;
            s->enum_texts = ld_xcalloc((size_t)nv, sizeof(char *));
            for (const cJSON *v = vals ? vals->child : k; v; v = vals ? v->next : NULL) {
                if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
                    ld_set_error("schema at %s: enum/const of objects or arrays is not supported", where);
                    goto fail;
                }
                s->enum_texts[s->n_enum++] = cJSON_PrintUnformatted(v);
            }
        } else {
            ld_set_error("schema at %s: keyword '%s' is not supported for constrained decoding", where, key);
            goto fail;
        }
    }
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(n, "required"), *add = cJSON_GetObjectItemCaseSensitive(n, "additionalProperties");
    for (const cJSON *r = cJSON_IsArray(req) ? req->child : NULL; r; r = r->next) {
        int found = -1;
        for (int i = 0; i < s->n_props && cJSON_IsString(r); i++) {
            cJSON *str = cJSON_CreateString(r->valuestring);
            char *txt = cJSON_PrintUnformatted(str);
            cJSON_Delete(str);
            txt[strlen(txt) - 1] = 0;
            if (!strcmp(txt + 1, s->prop_names[i])) found = i;
            free(txt);
        }
        if (found < 0) {
            ld_set_error("schema at %s: required names a property that is not declared (%s)", where,
                         cJSON_IsString(r) ? r->valuestring : "not a string");
            goto fail;
        }
        s->required |= 1ull << found;
    }
    if (req && !cJSON_IsArray(req)) {
        ld_set_error("schema at %s: required must be an array", where);
        goto fail;
    }
    if (add && !cJSON_IsBool(add)) {
        ld_set_error("schema at %s: additionalProperties as a schema is not supported (use true or false)", where);
        goto fail;
    }
    if (cJSON_IsTrue(add) && s->n_props) {
        ld_set_error("schema at %s: additionalProperties true beside declared properties is not supported", where);
        goto fail;
    }
    const char *counts[] = {"minItems", "maxItems", "minLength", "maxLength"};
    int *dst[] = {&s->min_items, &s->max_items, &s->min_length, &s->max_length};
    for (int i = 0; i < 4; i++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(n, counts[i]);
        if (!c) continue;
        if (!cJSON_IsNumber(c) || c->valuedouble < 0 || c->valuedouble > 1e6 || c->valuedouble != (int)c->valuedouble) {
            ld_set_error("schema at %s: %s must be a non-negative integer", where, counts[i]);
            goto fail;
        }
        *dst[i] = c->valueint;
    }
    if (!s->types) s->types = s->n_props ? T_OBJECT : s->items ? T_ARRAY : T_ALL;
    return s;
fail:
    json_schema_free(s);
    return NULL;
}

JsonSchema *json_schema_compile(const char *text) {
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        ld_set_error("schema is not valid JSON");
        return NULL;
    }
    JsonSchema *s = compile(root, "$", 0);
    cJSON_Delete(root);
    return s;
}

JsonSchema *json_schema_any_object(void) {
    JsonSchema *s = ld_xcalloc(1, sizeof *s);
    s->types = T_OBJECT;
    s->max_items = s->max_length = -1;
    return s;
}

// ---- the automaton ----------------------------------------------------------------------------------------

enum { F_VALUE, F_OBJ, F_ARR, F_STR, F_KEY, F_NUM, F_LIT };
enum { O_START, O_COLON, O_AFTER_VALUE, O_NEED_KEY };
enum { A_START, A_AFTER, A_NEED_VALUE };
enum { S_CHAR, S_ESC, S_HEX };
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

typedef struct {
    uint8_t kind, st;
    const JsonSchema *s;
    uint64_t seen;  // F_OBJ: properties given
    uint64_t cand;  // F_KEY / F_LIT: names or texts still matching
    int pos;  // F_KEY / F_LIT: bytes matched; F_NUM: length; F_STR: hex digits left
    int count;  // F_ARR: items so far; F_STR: characters so far
    int prop;  // F_OBJ: the property whose value comes next (-1: undeclared key)
} Frame;

struct JsonMatcher {
    const JsonSchema *root;
    int depth, ws, done;
    Frame f[MAX_DEPTH];
};

JsonMatcher *json_matcher_new(const JsonSchema *s) {
    JsonMatcher *m = ld_xcalloc(1, sizeof *m);
    m->root = s;
    m->depth = 1;
    m->f[0] = (Frame){.kind = F_VALUE, .s = s};
    return m;
}

void json_matcher_free(JsonMatcher *m) { free(m); }

static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int push(JsonMatcher *m, Frame f) {
    if (m->depth >= MAX_DEPTH) return -1;
    m->f[m->depth++] = f;
    return 0;
}

static void pop_value(JsonMatcher *m) {  // the top value is complete
    if (--m->depth == 0) m->done = 1;
}

static int num_complete(int st) { return st == N_ZERO || st == N_INT || st == N_FRAC || st == N_EXP; }

static const JsonSchema *sub_or_any(const JsonSchema *s) { return s ? s : &k_any; }

// Feeds one byte. 0: accepted; -1: the text would leave the language.
static int step(JsonMatcher *m, int c) {
    for (;;) {  // a byte that ends a number or literal is fed again to the frame below
        if (m->depth == 0) return -1;  // the document is complete: nothing may follow
        Frame *f = &m->f[m->depth - 1];
        const JsonSchema *s = f->s;
        switch (f->kind) {
            case F_VALUE:
                if (is_ws(c)) return 0;
                if (s->n_enum) {
                    uint64_t cand = 0;
                    for (int i = 0; i < s->n_enum; i++) cand |= 1ull << i;
                    *f = (Frame){.kind = F_LIT, .s = s, .cand = cand};
                    continue;
                }
                if (c == '{' && (s->types & T_OBJECT)) return *f = (Frame){.kind = F_OBJ, .st = O_START, .s = s, .prop = -1}, 0;
                if (c == '[' && (s->types & T_ARRAY)) return *f = (Frame){.kind = F_ARR, .st = A_START, .s = s}, 0;
                if (c == '"' && (s->types & T_STRING)) return *f = (Frame){.kind = F_STR, .st = S_CHAR, .s = s}, 0;
                if ((c == '-' || (c >= '0' && c <= '9')) && (s->types & (T_NUMBER | T_INTEGER))) {
                    *f = (Frame){.kind = F_NUM, .st = N_START, .s = s};
                    continue;
                }
                if ((c == 't' || c == 'f') && (s->types & T_BOOLEAN))
                    return *f = (Frame){.kind = F_LIT, .s = s, .cand = c == 't' ? 1 : 2, .pos = 1}, 0;
                if (c == 'n' && (s->types & T_NULL)) return *f = (Frame){.kind = F_LIT, .s = s, .cand = 4, .pos = 1}, 0;
                return -1;
            case F_LIT: {
                static const char *const lits[] = {"true", "false", "null"};
                uint64_t next = 0, ended = 0;
                for (int i = 0; i < 64; i++) {
                    if (!(f->cand >> i & 1)) continue;
                    const char *t = s->n_enum ? s->enum_texts[i] : lits[i];
                    int L = (int)strlen(t);
                    if (f->pos < L && t[f->pos] == c) next |= 1ull << i;
                    if (f->pos == L) ended = 1;
                }
                if (next) return f->cand = next, f->pos++, 0;
                if (!ended) return -1;
                pop_value(m);
                continue;
            }
            case F_NUM: {
                int digit = c >= '0' && c <= '9', integer = !(s->types & T_NUMBER);
                int st = f->st, ns = -1;
                switch (st) {
                    case N_START:
                        ns = c == '-' ? N_MINUS : c == '0' ? N_ZERO : digit ? N_INT : -1;
                        break;
                    case N_MINUS:
                        ns = c == '0' ? N_ZERO : digit ? N_INT : -1;
                        break;
                    case N_ZERO:
                        ns = !integer && c == '.' ? N_DOT : !integer && (c == 'e' || c == 'E') ? N_E : -1;
                        break;
                    case N_INT:
                        ns = digit ? N_INT : !integer && c == '.' ? N_DOT : !integer && (c == 'e' || c == 'E') ? N_E : -1;
                        break;
                    case N_DOT:
                        ns = digit ? N_FRAC : -1;
                        break;
                    case N_FRAC:
                        ns = digit ? N_FRAC : (c == 'e' || c == 'E') ? N_E : -1;
                        break;
                    case N_E:
                        ns = (c == '+' || c == '-') ? N_ESIGN : digit ? N_EXP : -1;
                        break;
                    case N_ESIGN:
                    case N_EXP:
                        ns = digit ? N_EXP : -1;
                        break;
                }
                if (ns >= 0 && f->pos < 32) return f->st = (uint8_t)ns, f->pos++, 0;
                if (ns >= 0 || !num_complete(st)) return -1;
                pop_value(m);
                continue;
            }
            case F_STR:
            case F_KEY:
                if (f->st == S_ESC) {
                    if (f->kind == F_KEY && f->s->n_props) return -1;  // declared names are matched without escapes
                    if (c == 'u') return f->st = S_HEX, f->pos = 4, 0;
                    return strchr("\"\\/bfnrt", c) && c ? (f->st = S_CHAR, 0) : -1;
                }
                if (f->st == S_HEX) {  // (the escape was counted as one character at its backslash)
                    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return -1;
                    // no surrogate halves (\uD800-\uDFFF): alone they are text many parsers refuse; raw UTF-8 says it all
                    if (f->pos == 3 && (f->cand == 'd' || f->cand == 'D') && !(c >= '0' && c <= '7')) return -1;
                    if (f->pos == 4) f->cand = (uint64_t)c;
                    if (--f->pos == 0) f->st = S_CHAR;
                    return 0;
                }
                if ((unsigned char)c < 0x20) return -1;
                if (f->kind == F_KEY && f->s->n_props) {  // a declared property not given yet
                    const JsonSchema *o = f->s;
                    if (c == '"') {
                        for (int i = 0; i < o->n_props; i++)
                            if ((f->cand >> i & 1) && (int)strlen(o->prop_names[i]) == f->pos) {
                                Frame *obj = &m->f[m->depth - 2];
                                obj->prop = i, obj->seen |= 1ull << i, obj->st = O_COLON;
                                m->depth--;
                                return 0;
                            }
                        return -1;
                    }
                    uint64_t next = 0;
                    for (int i = 0; i < o->n_props; i++)
                        if ((f->cand >> i & 1) && (int)strlen(o->prop_names[i]) > f->pos && o->prop_names[i][f->pos] == c)
                            next |= 1ull << i;
                    if (!next) return -1;
                    f->cand = next, f->pos++;
                    return 0;
                }
                if (f->kind == F_STR && c != '"' && (c & 0xC0) != 0x80) {  // a new character (not a UTF-8 continuation)
                    if (f->s->max_length >= 0 && f->count >= f->s->max_length) return -1;
                    f->count++;
                }
                if (c == '\\') return f->st = S_ESC, 0;
                if (c == '"') {
                    if (f->kind == F_STR && f->count < f->s->min_length) return -1;
                    if (f->kind == F_KEY) {
                        Frame *obj = &m->f[m->depth - 2];
                        obj->prop = -1, obj->st = O_COLON;
                        m->depth--;
                    } else {
                        pop_value(m);
                    }
                }
                return 0;
            case F_OBJ:
                if (is_ws(c)) return 0;
                if (f->st == O_START || f->st == O_NEED_KEY) {
                    if (c == '"') {
                        uint64_t left = 0;
                        for (int i = 0; i < s->n_props; i++)
                            if (!(f->seen >> i & 1)) left |= 1ull << i;
                        if (s->n_props && !left) return -1;
                        return push(m, (Frame){.kind = F_KEY, .st = S_CHAR, .s = s, .cand = left});
                    }
                    if (c == '}' && f->st == O_START && !(s->required & ~f->seen)) return pop_value(m), 0;
                    return -1;
                }
                if (f->st == O_COLON) {
                    if (c != ':') return -1;
                    f->st = O_AFTER_VALUE;
                    return push(m, (Frame){.kind = F_VALUE, .s = f->prop >= 0 ? s->props[f->prop] : &k_any});
                }
                // O_AFTER_VALUE
                if (c == ',') {
                    int left = !s->n_props;
                    for (int i = 0; i < s->n_props; i++) left |= !(f->seen >> i & 1);
                    return left ? (f->st = O_NEED_KEY, 0) : -1;
                }
                if (c == '}' && !(s->required & ~f->seen)) return pop_value(m), 0;
                return -1;
            case F_ARR:
                if (is_ws(c)) return 0;
                if (f->st == A_START && c == ']') return s->min_items == 0 ? (pop_value(m), 0) : -1;
                if (f->st == A_AFTER) {
                    if (c == ']') return f->count >= s->min_items ? (pop_value(m), 0) : -1;
                    if (c == ',' && (s->max_items < 0 || f->count < s->max_items)) return f->st = A_NEED_VALUE, 0;
                    return -1;
                }
                if (s->max_items >= 0 && f->count >= s->max_items) return -1;
                f->count++;
                f->st = A_AFTER;
                if (push(m, (Frame){.kind = F_VALUE, .s = sub_or_any(s->items)})) return -1;
                continue;  // the byte starts the item
        }
        return -1;
    }
}

static int feed(JsonMatcher *m, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)b[i];
        int in_string = m->depth && (m->f[m->depth - 1].kind == F_STR || m->f[m->depth - 1].kind == F_KEY);
        if (is_ws(c) && !in_string) {
            if (++m->ws > MAX_WS) return -1;
        } else {
            m->ws = 0;
        }
        if (step(m, c)) return -1;
    }
    return 0;
}

int json_matcher_accepts(const JsonMatcher *m, const char *bytes, size_t n) {
    JsonMatcher t;  // only the live frames are copied
    t.root = m->root, t.depth = m->depth, t.ws = m->ws, t.done = m->done;
    memcpy(t.f, m->f, sizeof(Frame) * (size_t)m->depth);
    return feed(&t, bytes, n) == 0;
}

int json_matcher_feed(JsonMatcher *m, const char *bytes, size_t n) {
    JsonMatcher t = *m;
    if (feed(&t, bytes, n)) return -1;
    *m = t;
    return 0;
}

int json_matcher_complete(const JsonMatcher *m) {
    if (m->done) return 1;
    if (m->depth != 1) return 0;
    const Frame *f = &m->f[0];
    if (f->kind == F_NUM) return num_complete(f->st);
    if (f->kind == F_LIT) {
        static const char *const lits[] = {"true", "false", "null"};
        for (int i = 0; i < 64; i++)
            if ((f->cand >> i & 1) && (int)strlen(f->s->n_enum ? f->s->enum_texts[i] : lits[i]) == f->pos) return 1;
    }
    return 0;
}
