// Constrained JSON decoding: the matcher accepts exactly the prefixes of documents that fit the schema. Known
// documents byte by byte; random walks that take only accepted bytes always end in text that cJSON parses and an
// independent validator (below) passes; refusals of unsupported schemas name the keyword.
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "json_constraint.h"
#include "test_util.h"
#include "util.h"

static int accepts_all(const char *schema, const char *doc) {
    JsonSchema *s = schema ? json_schema_compile(schema) : json_schema_any_object();
    if (!s) return -2;
    JsonMatcher *m = json_matcher_new(s);
    int ok = json_matcher_feed(m, doc, strlen(doc)) == 0;
    int complete = ok && json_matcher_complete(m);
    json_matcher_free(m);
    json_schema_free(s);
    return ok ? (complete ? 2 : 1) : 0;  // 2 whole document, 1 prefix, 0 refused
}

// An independent check of a parsed value against the schema subset.
static int valid(const cJSON *v, const cJSON *s) {
    if (!s || cJSON_IsTrue(s)) return 1;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type"), *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (en) {
        for (const cJSON *e = en->child; e; e = e->next)
            if (cJSON_Compare(e, v, 1)) return 1;
        return 0;
    }
    if (cJSON_IsString(type)) {
        const char *t = type->valuestring;
        if (!strcmp(t, "object")) {
            if (!cJSON_IsObject(v)) return 0;
            const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties"), *req = cJSON_GetObjectItemCaseSensitive(s, "required");
            for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
                if (!cJSON_GetObjectItemCaseSensitive(v, r->valuestring)) return 0;
            for (const cJSON *k = v->child; k; k = k->next) {
                const cJSON *ps = props ? cJSON_GetObjectItemCaseSensitive(props, k->string) : NULL;
                if (props && !ps) return 0;
                if (!valid(k, ps)) return 0;
            }
            return 1;
        }
        if (!strcmp(t, "array")) {
            if (!cJSON_IsArray(v)) return 0;
            const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minItems"), *mx = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
            int n = cJSON_GetArraySize(v);
            if ((mn && n < mn->valueint) || (mx && n > mx->valueint)) return 0;
            for (const cJSON *e = v->child; e; e = e->next)
                if (!valid(e, cJSON_GetObjectItemCaseSensitive(s, "items"))) return 0;
            return 1;
        }
        if (!strcmp(t, "string")) return cJSON_IsString(v);
        if (!strcmp(t, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
        if (!strcmp(t, "number")) return cJSON_IsNumber(v);
        if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
        if (!strcmp(t, "null")) return cJSON_IsNull(v);
    }
    return 1;
}

static uint64_t g_rng = 0x1234567;
static unsigned rnd(unsigned n) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (unsigned)(g_rng % n);
}

// Random walks: at every step pick among the accepted bytes (biased towards closing when long).
static void walks(const char *name, const char *schema, int n_walks) {
    static const char alphabet[] = "{}[]\":,-0123456789.eE+ \nabcdefghijklmnopqrstuvwxyz\\/SR_";
    cJSON *sj = schema ? cJSON_Parse(schema) : NULL;
    JsonSchema *s = schema ? json_schema_compile(schema) : json_schema_any_object();
    CHECK(s != NULL, "%s: %s", name, ld_last_error());
    if (!s) return;
    int completed = 0, bad = 0;
    for (int w = 0; w < n_walks; w++) {
        JsonMatcher *m = json_matcher_new(s);
        char doc[4096];
        int n = 0;
        while (n < 3000 && !json_matcher_complete(m)) {
            char opts[64];
            int no = 0;
            for (const char *a = alphabet; *a; a++)
                if (json_matcher_accepts(m, a, 1)) opts[no++] = *a;
            if (!no) break;
            char c = opts[rnd((unsigned)no)];
            if (n > 200)  // steer home: prefer closers and quotes
                for (int i = 0; i < no; i++)
                    if (strchr("}]\"", opts[i]) || (opts[i] >= '0' && opts[i] <= '9' && rnd(2))) c = opts[i];
            CHECK(json_matcher_feed(m, &c, 1) == 0, "feed after accepts");
            doc[n++] = c;
        }
        doc[n] = 0;
        if (json_matcher_complete(m)) {
            completed++;
            cJSON *v = cJSON_Parse(doc);
            if (!v || !valid(v, sj)) {
                if (bad++ < 3) fprintf(stderr, "%s: walk produced %s: %s\n", name, v ? "an invalid document" : "unparsable text", doc);
            }
            cJSON_Delete(v);
        }
        json_matcher_free(m);
    }
    printf("%-10s %d random walks, %d completed, %d failed to parse or validate\n", name, n_walks, completed, bad);
    CHECK(bad == 0, "%s: %d walks left the schema", name, bad);
    CHECK(completed > n_walks / 2, "%s: only %d of %d walks completed", name, completed, n_walks);
    json_schema_free(s);
    cJSON_Delete(sj);
}

int main(void) {
    const char *judge =
        "{\"type\":\"object\",\"properties\":{"
        "\"similarity_assessment\":{\"type\":\"object\",\"properties\":{\"score\":{\"type\":\"integer\"},\"reason\":{\"type\":\"string\"}},"
        "\"required\":[\"score\",\"reason\"]},"
        "\"precision_assessment\":{\"type\":\"object\",\"properties\":{\"score\":{\"type\":\"integer\"},\"reason\":{\"type\":\"string\"}},"
        "\"required\":[\"score\",\"reason\"]}},\"required\":[\"similarity_assessment\",\"precision_assessment\"]}";
    const char *synth =
        "{\"type\":\"object\",\"properties\":{\"contents\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
        "\"properties\":{\"instruction\":{\"type\":\"string\"},\"response\":{\"type\":\"string\"}},"
        "\"required\":[\"instruction\",\"response\"]}}},\"required\":[\"contents\"]}";
    const char *mixed =
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"},\"ab\":{\"enum\":[\"x\",\"xy\",1,12,true,null]},"
        "\"list\":{\"type\":\"array\",\"items\":{\"type\":[\"integer\",\"null\"]},\"minItems\":1,\"maxItems\":3},"
        "\"flag\":{\"type\":\"boolean\"},\"free\":{\"type\":\"object\"}},\"required\":[\"list\"]}";
    struct {
        const char *schema, *doc;
        int want;
    } cases[] = {
        {NULL, "{\"k\": [1, 2.5e-3, \"s\\u00e9\", true, null, {}]}", 2},
        {NULL, "{\"k\": ", 1},
        {NULL, "[1]", 0},  // json_object mode: an object
        {NULL, "{\"a\":1}}", 0},
        {NULL, "{\"a\":01}", 0},
        {NULL, "{\"a\":\"line\nbreak\"}", 0},  // raw control characters are not JSON
        {judge,
         "{\"similarity_assessment\": {\"score\": 80, \"reason\": \"close\"}, \"precision_assessment\": {\"reason\": \"ok\", \"score\": "
         "7}}",
         2},
        {judge, "{\"similarity_assessment\": {\"score\": 80.5", 0},  // integer
        {judge, "{\"similarity_assessment\": {\"score\": 80}", 0},  // reason required
        {judge, "{\"similarity\"", 0},  // undeclared key
        {judge, "{\"precision_assessment\": {\"score\": 1, \"reason\": \"\"}, \"precision_assessment\"", 0},  // twice
        {judge, "{\"precision_assessment\": {\"score\": 1, \"reason\": \"\"}}", 0},  // similarity required
        {synth, "{\"contents\": [{\"instruction\": \"a\", \"response\": \"b\"}]}", 2},
        {synth, "{\"contents\": [{\"instruction\": \"a\"}]}", 0},
        {mixed, "{\"list\": [1, null, 3]}", 2},
        {mixed, "{\"list\": [1, null, 3, 4]}", 0},  // maxItems
        {mixed, "{\"list\": []}", 0},  // minItems
        {mixed, "{\"ab\": \"xy\", \"list\": [0]}", 2},
        {mixed, "{\"ab\": 12, \"list\": [0]}", 2},
        {mixed, "{\"ab\": 123", 0},
        {mixed, "{\"ab\": \"xz", 0},
        {mixed, "{\"a\": -0.5E+3, \"list\": [-7], \"free\": {\"any\": [\"thing\"]}, \"flag\": false}", 2},
        {"{\"type\":\"integer\"}", "42", 2},
        {"{\"type\":\"string\"}", "\"abc", 1},
        {"{\"type\":\"string\",\"maxLength\":3}", "\"abc\"", 2},
        {"{\"type\":\"string\",\"maxLength\":3}", "\"abcd", 0},
        {"{\"type\":\"string\",\"maxLength\":3}", "\"\xc3\xa9\xe2\x82\xac\\n\"", 2},  // characters, not bytes; an escape is one
        {"{\"type\":\"string\",\"minLength\":2}", "\"a\"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = accepts_all(cases[i].schema, cases[i].doc);
        CHECK(got == cases[i].want, "case %zu: %s -> %d, want %d", i, cases[i].doc, got, cases[i].want);
    }
    struct {
        const char *schema, *msg;
    } refused[] = {
        {"{\"type\":\"string\",\"pattern\":\"a+\"}", "keyword 'pattern'"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"str\"}}}", "unknown type str"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "not declared (b)"},
        {"{\"anyOf\":[{}]}", "keyword 'anyOf'"},
        {"not json", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        JsonSchema *s = json_schema_compile(refused[i].schema);
        CHECK(!s && strstr(ld_last_error(), refused[i].msg), "schema %s: %s", refused[i].schema, s ? "accepted" : ld_last_error());
        json_schema_free(s);
    }
    walks("any-object", NULL, 300);
    walks("judge", judge, 300);
    walks("synth", synth, 300);
    walks("mixed", mixed, 300);
    return test_finish("test_json_constraint");
}
