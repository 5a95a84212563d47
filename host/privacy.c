#define PCRE2_CODE_UNIT_WIDTH 8
#include "privacy.h"

#include <ctype.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "records.h"
#include "text.h"
#include "util.h"

typedef struct {
    const cJSON *enabled;
    PrivacyConfig c;
} PrivacyOptions;

#define P(field) offsetof(PrivacyOptions, field)
static const OptionSpec k_privacy_options[] = {
    {"enabled", OPT_VALUE, P(enabled), 0, 0, NULL, NULL, "scrub before any request leaves (default: on when a service is remote)"},
    {"kinds", OPT_LIST, P(c.kinds), 0, 0, NULL, NULL, "what to look for: email, phone, ip, iban, card, url, api_key (default all)"},
    {"terms", OPT_LIST, P(c.terms), 0, 0, NULL, NULL, "names and terms of your own (whole words, any case)"},
    {"terms_file", OPT_STR, P(c.terms_file), 0, 0, NULL, NULL, "more terms, one per line"},
    {"patterns", OPT_LIST, P(c.patterns), 0, 0, NULL, NULL, "your own {name, regex} (PCRE2)"},
    {"surrogates", OPT_BOOL, P(c.surrogates), 0, 1, "0", NULL, "synthetic pairs get realistic stand-ins instead of placeholders"},
    {NULL}};
#undef P

int privacy_config_read(const cJSON *section, const char *file, int default_on, PrivacyConfig *c) {
    PrivacyOptions o;
    options_defaults(k_privacy_options, &o);
    if (options_from_json(k_privacy_options, &o, section, "privacy", file)) return -1;
    if (o.enabled && !cJSON_IsBool(o.enabled)) {
        ld_set_error("%s: 'privacy.enabled' must be true or false", file);
        return -1;
    }
    *c = o.c;
    c->enabled = o.enabled ? cJSON_IsTrue(o.enabled) : default_on;
    return 0;
}

const char *const k_pii_names[PII_KINDS] = {"email", "phone", "ip", "iban", "card", "url", "api_key", "term", "custom"};
static const char *const k_placeholder[PII_KINDS] = {"EMAIL", "PHONE", "IP", "IBAN", "CARD", "URL", "KEY", "TERM", NULL};

// The built-in patterns, applied in this order (a URL's user:password@ is taken before its parts look like an email).
static const PiiKind k_order[] = {PII_URL, PII_KEY, PII_EMAIL, PII_IBAN, PII_CARD, PII_IP, PII_PHONE};
static const char *const k_patterns[PII_KINDS] = {
    // a URL's trailing punctuation belongs to the sentence around it
    [PII_URL] =
        "\\b[A-Za-z][A-Za-z0-9+.-]*://[^\\s/:@\"'<>]+:[^\\s/@\"'<>]+@(?:[^\\s\"'<>]*[^\\s\"'<>.,;:!?)])?"
        "|\\bhttps?://[^\\s\"'<>?]*\\?(?:[^\\s\"'<>]*&)?(?i:access_token|token|api_key|apikey|key|secret|password|passwd|sig|"
        "signature|auth)=[^\\s\"'<>&]+(?:[^\\s\"'<>]*[^\\s\"'<>.,;:!?)])?",
    [PII_KEY] =
        "(?<![A-Za-z0-9_-])(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|gh[pousr]_[A-Za-z0-9]{36,}"
        "|xox[abprs]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,})"
        "(?![A-Za-z0-9_-])",
    [PII_EMAIL] = "(?<![\\w.+%-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\\.)+[A-Za-z]{2,}(?![\\w-])",
    [PII_IBAN] = "(?<![A-Za-z0-9])[A-Z]{2}\\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])",
    [PII_CARD] = "(?<![\\d-])(?:\\d[ -]?){12,18}\\d(?![\\d-])",
    [PII_IP] =
        "(?<![\\d.])(?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?![\\d.])"
        "|(?<![:\\w])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![:\\w])"
        "|(?<![:\\w])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}(?![:\\w])",
    // not part of a longer run of digit groups (a card number that failed its checksum is no phone number)
    // also unseparated: E.164 (+15551234567), national with a trunk 0 (07700900123), and ten-digit NANP (5551234567)
    [PII_PHONE] =
        "(?<![\\w+])(?<!\\d[ .-])(?:\\+\\d{1,3}[ .-]?)?(?:\\(\\d{2,4}\\)[ .-]?|\\d{2,4}[ .-])\\d{3,4}[ .-]?\\d{3,4}"
        "(?![\\w-])(?![ .-]?\\d)"
        "|(?<![\\w+])\\+\\d{10,14}(?!\\w)|(?<![\\w+])0\\d{9,10}(?!\\w)|(?<![\\w+])[2-9]\\d{2}[2-9]\\d{6}(?!\\w)",
};

typedef struct {
    PiiKind kind;
    char *name;  // placeholder name (custom patterns: the user's, upper-cased)
    pcre2_code *re;
} Pattern;

struct Scrubber {
    Pattern *p;
    int n;
};

typedef struct {
    char *placeholder, *original;
} MapEntry;

typedef struct {
    char name[48];
    int next;  // the last number given (or found already written in the request)
} Counter;

struct ScrubMap {
    MapEntry *e;
    int n;
    Counter *ctr;  // per placeholder name
    int n_ctr;
};

static Counter *counter(ScrubMap *m, const char *name, size_t len) {
    for (int i = 0; i < m->n_ctr; i++)
        if (strlen(m->ctr[i].name) == len && !memcmp(m->ctr[i].name, name, len)) return &m->ctr[i];
    m->ctr = ld_xrealloc(m->ctr, sizeof(Counter) * (size_t)(m->n_ctr + 1));
    Counter *c = &m->ctr[m->n_ctr++];
    snprintf(c->name, sizeof c->name, "%.*s", (int)(len < sizeof c->name ? len : sizeof c->name - 1), name);
    c->next = 0;
    return c;
}

static pcre2_code *compile(const char *pattern, uint32_t opts, const char *what, const char *file) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(err, msg, sizeof msg);
        ld_set_error("%s: %s does not compile at offset %zu: %s", file, what, (size_t)off, (const char *)msg);
    }
    return re;
}

static void add_pattern(Scrubber *s, PiiKind kind, const char *name, pcre2_code *re) {
    s->p = ld_xrealloc(s->p, sizeof(Pattern) * (size_t)(s->n + 1));
    s->p[s->n++] = (Pattern){kind, ld_xstrdup(name), re};
}

static int kind_wanted(const PrivacyConfig *c, PiiKind k) {
    if (!c->kinds) return 1;
    for (const cJSON *e = c->kinds->child; e; e = e->next)
        if (cJSON_IsString(e) && !strcmp(e->valuestring, k_pii_names[k])) return 1;
    return 0;
}

// One alternation of the user's terms as literals (metacharacters escaped), whole words, any case.
static char *terms_pattern(const PrivacyConfig *c, const char *file, int *n_terms) {
    size_t cap = 64, len = 0;
    char *pat = ld_xmalloc(cap);
    len = (size_t)snprintf(pat, cap, "(?<!\\w)(?:");
    *n_terms = 0;
    char *file_text = c->terms_file ? ld_read_file(c->terms_file, NULL) : NULL;
    if (c->terms_file && !file_text) {
        free(pat);
        return NULL;
    }
    const cJSON *e = c->terms ? c->terms->child : NULL;
    char *line = file_text, *save = NULL;
    char *tok = file_text ? strtok_r(line, "\r\n", &save) : NULL;
    for (;;) {
        const char *t = e ? (cJSON_IsString(e) ? e->valuestring : NULL) : tok;
        if (!e && !tok) break;
        if (e && !cJSON_IsString(e)) {
            ld_set_error("%s: 'privacy.terms' must be a list of strings", file);
            free(pat), free(file_text);
            return NULL;
        }
        if (e)
            e = e->next;
        else
            tok = strtok_r(NULL, "\r\n", &save);
        while (t && isspace((unsigned char)*t)) t++;
        if (!t || !*t) continue;
        if (len + 2 * strlen(t) + 16 > cap) pat = ld_xrealloc(pat, cap = (len + 2 * strlen(t) + 16) * 2);
        if (*n_terms) pat[len++] = '|';
        for (const char *q = t; *q; q++) {
            if (strchr("\\^$.|?*+()[]{}", *q)) pat[len++] = '\\';
            pat[len++] = *q;
        }
        (*n_terms)++;
    }
    snprintf(pat + len, cap - len, ")(?!\\w)");
    free(file_text);
    return pat;
}

Scrubber *scrubber_new(const PrivacyConfig *c, const char *file) {
    Scrubber *s = ld_xcalloc(1, sizeof *s);
    for (const cJSON *e = c->kinds ? c->kinds->child : NULL; e; e = e->next) {
        int known = 0;
        for (int k = 0; k < PII_TERM && cJSON_IsString(e); k++) known |= !strcmp(e->valuestring, k_pii_names[k]);
        if (!known) {
            ld_set_error("%s: 'privacy.kinds' names '%s' (known: email, phone, ip, iban, card, url, api_key)", file,
                         cJSON_IsString(e) ? e->valuestring : "a non-string");
            scrubber_free(s);
            return NULL;
        }
    }
    for (size_t i = 0; i < sizeof k_order / sizeof k_order[0]; i++) {
        PiiKind k = k_order[i];
        if (!kind_wanted(c, k)) continue;
        pcre2_code *re = compile(k_patterns[k], 0, k_pii_names[k], file);
        if (!re) {  // a bug in the table, not in the user's config
            scrubber_free(s);
            return NULL;
        }
        add_pattern(s, k, k_placeholder[k], re);
    }
    int n_terms;
    char *tp = terms_pattern(c, file, &n_terms);
    if (!tp) {
        scrubber_free(s);
        return NULL;
    }
    pcre2_code *terms = n_terms ? compile(tp, PCRE2_CASELESS, "privacy.terms", file) : NULL;
    free(tp);
    if (n_terms && !terms) {  // too many or too long terms for one pattern, or a term that is not UTF-8
        scrubber_free(s);
        return NULL;
    }
    if (terms) add_pattern(s, PII_TERM, "TERM", terms);
    int i = 0;
    for (const cJSON *e = c->patterns ? c->patterns->child : NULL; e; e = e->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name"), *rx = cJSON_GetObjectItemCaseSensitive(e, "regex");
        char where[64];
        snprintf(where, sizeof where, "privacy.patterns[%d].regex", i);
        if (!cJSON_IsString(name) || !cJSON_IsString(rx) || !*name->valuestring || cJSON_GetArraySize(e) != 2) {
            ld_set_error("%s: 'privacy.patterns[%d]' must be {name: KIND, regex: PATTERN}", file, i);
            scrubber_free(s);
            return NULL;
        }
        pcre2_code *re = compile(rx->valuestring, 0, where, file);
        if (!re) {
            scrubber_free(s);
            return NULL;
        }
        char up[48];
        size_t k = 0;
        for (const char *q = name->valuestring; *q && k < sizeof up - 1; q++)
            up[k++] = isalnum((unsigned char)*q) ? (char)toupper(*q) : '_';
        up[k] = 0;
        int taken = 0;  // one counter per placeholder name: a second pattern of the same name would reuse numbers
        for (int q = 0; q < s->n; q++) taken |= !strcmp(s->p[q].name, up);
        for (int q = 0; q < PII_CUSTOM; q++) taken |= k_placeholder[q] && !strcmp(k_placeholder[q], up);
        if (taken) {
            ld_set_error(
                "%s: 'privacy.patterns[%d].name' is %s, a name already in use (built-in: EMAIL, PHONE, IP, IBAN, CARD, URL, KEY, "
                "TERM)",
                file, i, up);
            pcre2_code_free(re);
            scrubber_free(s);
            return NULL;
        }
        add_pattern(s, PII_CUSTOM, up, re);
    }
    return s;
}

void scrubber_free(Scrubber *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) pcre2_code_free(s->p[i].re), free(s->p[i].name);
    free(s->p);
    free(s);
}

ScrubMap *scrub_map_new(void) { return ld_xcalloc(1, sizeof(ScrubMap)); }

void scrub_map_free(ScrubMap *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->e[i].placeholder), free(m->e[i].original);
    free(m->e), free(m->ctr);
    free(m);
}

void scrub_map_reserve(ScrubMap *m, const char *text) {
    for (const char *p = strchr(text, '<'); p; p = strchr(p + 1, '<')) {  // <NAME_12>: numbering goes on above 12
        size_t n = strspn(p + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        const char *us = NULL;
        for (size_t i = n; i > 0 && !us; i--)
            if (p[i] == '_') us = p + i;
        if (!us || us == p + 1 || p[1 + n] != '>' || us == p + n) continue;
        char *end;
        long num = strtol(us + 1, &end, 10);
        if (end != p + 1 + n || num <= 0 || num > 1000000) continue;
        Counter *c = counter(m, p + 1, (size_t)(us - p - 1));
        if (num > c->next) c->next = (int)num;
    }
}

// ---- validators: a match that fails its checksum is no find ----------------------------------------------

static int luhn_ok(const char *s, size_t n) {
    int sum = 0, digits = 0;
    for (size_t i = n; i-- > 0;) {
        if (!isdigit((unsigned char)s[i])) continue;
        int d = s[i] - '0';
        if (digits++ % 2) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return digits >= 13 && digits <= 19 && sum % 10 == 0;
}

static int iban_mod97(const char *compact) {  // the IBAN rearranged (first four characters last), letters as 10..35
    size_t n = strlen(compact);
    int r = 0;
    for (size_t k = 0; k < n; k++) {
        char ch = compact[(k + 4) % n];
        int v = isdigit((unsigned char)ch) ? ch - '0' : ch - 'A' + 10;
        r = v >= 10 ? (r * 100 + v) % 97 : (r * 10 + v) % 97;
    }
    return r;
}

static int iban_ok(const char *s, size_t n) {
    char c[40];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof c - 1; i++)
        if (s[i] != ' ') c[k++] = s[i];
    c[k] = 0;
    return k >= 15 && k <= 34 && iban_mod97(c) == 1;
}

static int phone_ok(const char *s, size_t n) {
    int digits = 0;
    for (size_t i = 0; i < n; i++) digits += isdigit((unsigned char)s[i]) != 0;
    return digits >= 9 && digits <= 15;
}

static int valid(PiiKind k, const char *s, size_t n) {
    if (k == PII_CARD) return luhn_ok(s, n);
    if (k == PII_IBAN) return iban_ok(s, n);
    if (k == PII_PHONE) return phone_ok(s, n);
    return 1;
}

// ---- scrubbing --------------------------------------------------------------------------------------------

static const char *placeholder_for(ScrubMap *m, const Pattern *p, const char *orig, size_t n) {
    size_t nl = strlen(p->name);
    for (int i = 0; i < m->n; i++)  // the same string of the same kind: the same placeholder
        if (strlen(m->e[i].original) == n && !memcmp(m->e[i].original, orig, n) && !strncmp(m->e[i].placeholder + 1, p->name, nl) &&
            m->e[i].placeholder[1 + nl] == '_')
            return m->e[i].placeholder;
    char ph[96];
    snprintf(ph, sizeof ph, "<%s_%d>", p->name, ++counter(m, p->name, nl)->next);
    m->e = ld_xrealloc(m->e, sizeof(MapEntry) * (size_t)(m->n + 1));
    char *o = ld_xmalloc(n + 1);
    memcpy(o, orig, n);
    o[n] = 0;
    m->e[m->n++] = (MapEntry){ld_xstrdup(ph), o};
    return m->e[m->n - 1].placeholder;
}

typedef struct {
    char *s;
    size_t n, cap;
} Out;

static void put(Out *o, const char *p, size_t n) {
    if (o->n + n + 1 > o->cap) o->s = ld_xrealloc(o->s, o->cap = (o->n + n + 1) * 2);
    memcpy(o->s + o->n, p, n);
    o->n += n;
    o->s[o->n] = 0;
}

// One pattern over text: every valid match replaced (heap). NULL when the matcher fails (a match, depth or heap
// limit): scrubbing fails closed, the request is refused rather than sent half scrubbed.
static char *replace_all(const Pattern *p, const char *text, ScrubMap *m, long *count) {
    size_t len = strlen(text), at = 0;
    Out o = {ld_xmalloc(len + 64), 0, len + 64};
    o.s[0] = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->re, NULL);
    int rc;
    while (at <= len && (rc = pcre2_match(p->re, (PCRE2_SPTR)text, len, at, 0, md, NULL)) >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        int ok = e > s && valid(p->kind, text + s, e - s);
        size_t next = ok || e > s ? e : s + 1;  // an empty match moves on by one character
        while (next < len && ((unsigned char)text[next] & 0xC0) == 0x80) next++;
        if (next > len) next = len;
        if (ok) {
            put(&o, text + at, s - at);
            const char *ph = placeholder_for(m, p, text + s, e - s);
            put(&o, ph, strlen(ph));
            (*count)++;
        } else {
            put(&o, text + at, next - at);
        }
        at = next;
        if (at >= len) break;
    }
    pcre2_match_data_free(md);
    if (at < len && rc != PCRE2_ERROR_NOMATCH && rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof msg);
        ld_set_error("privacy: the %s pattern could not search the text (%s): the request is refused, not sent half scrubbed", p->name,
                     (const char *)msg);
        free(o.s);
        return NULL;
    }
    if (at < len) put(&o, text + at, len - at);
    return o.s;
}

char *scrub_text(const Scrubber *s, const char *text, ScrubMap *m, long counts[PII_KINDS]) {
    char *cur = ld_utf8_invalid_at(text, strlen(text)) >= 0 ? ld_utf8_repair(text, strlen(text), NULL) : ld_xstrdup(text);
    scrub_map_reserve(m, cur);  // placeholders the text already holds are never given out again
    for (int i = 0; i < s->n && cur; i++) {
        long found = 0;
        char *next = replace_all(&s->p[i], cur, m, &found);
        free(cur);
        cur = next;
        if (counts) counts[s->p[i].kind] += found;
    }
    return cur;
}

int scrub_find(const Scrubber *s, const char *text, int *kind) {
    ScrubMap *m = scrub_map_new();
    long counts[PII_KINDS] = {0};
    char *t = scrub_text(s, text, m, counts);
    scrub_map_free(m);
    if (!t) {  // it could not be searched: treat it as holding something
        if (kind) *kind = PII_CUSTOM;
        return 0;
    }
    free(t);
    for (int k = 0; k < PII_KINDS; k++)
        if (counts[k]) {
            if (kind) *kind = k;
            return 0;
        }
    return -1;
}

static char *replace_literal(const char *text, const char *from, const char *to) {
    size_t nf = strlen(from), nt = strlen(to), n = 0;
    for (const char *p = strstr(text, from); p; p = strstr(p + nf, from)) n++;
    char *out = ld_xmalloc(strlen(text) + n * (nt > nf ? nt - nf : 0) + 1), *o = out;
    for (const char *p = text, *q; (q = strstr(p, from)) || *p; p = q + nf) {
        if (!q) {
            strcpy(o, p);
            return out;
        }
        memcpy(o, p, (size_t)(q - p)), o += q - p;
        memcpy(o, to, nt), o += nt;
    }
    *o = 0;
    return out;
}

// s as the inside of a JSON string (heap).
static char *json_escaped(const char *s) {
    cJSON *str = cJSON_CreateString(s);
    char *q = cJSON_PrintUnformatted(str), *inner = ld_xstrdup(q + 1);
    inner[strlen(inner) - 1] = 0;  // without the quotes
    free(q);
    cJSON_Delete(str);
    return inner;
}

char *scrub_restore(const ScrubMap *m, const char *text, int json) {
    char *cur = ld_xstrdup(text);
    for (int i = m ? m->n - 1 : -1; i >= 0; i--) {  // <EMAIL_12> before <EMAIL_1>: the later, longer ones first
        char *orig = json ? json_escaped(m->e[i].original) : ld_xstrdup(m->e[i].original);
        char *next = replace_literal(cur, m->e[i].placeholder, orig);
        free(cur), free(orig);
        cur = next;
    }
    return cur;
}

// ---- surrogates: realistic stand-ins, so a student does not learn to write <EMAIL_1> ------------------------

static void iban_surrogate(unsigned n, char *out, size_t cap) {
    char body[32];
    snprintf(body, sizeof body, "GB00TEST%06u%08u", 100000 + n % 900000, 10000000 + (n * 7919u) % 90000000);
    int check = 98 - iban_mod97(body);
    snprintf(out, cap, "GB%02d%s", check, body + 4);
}

static void surrogate(const char *kind, unsigned n, char *out, size_t cap) {
    static const char *names[] = {"Alex Morgan",  "Sam Rivera", "Jordan Lee",  "Casey Kim",
                                  "Taylor Quinn", "Riley Chen", "Avery Patel", "Morgan Diaz"};
    static const char *cards[] = {"4111 1111 1111 1111", "5555 5555 5555 4444", "3782 822463 10005", "6011 1111 1111 1117"};
    static const char *first[] = {"alex", "sam", "jordan", "casey", "taylor", "riley", "avery", "morgan"};
    if (!strcmp(kind, "EMAIL"))
        snprintf(out, cap, "%s.%u@example.com", first[n % 8], n % 97);
    else if (!strcmp(kind, "PHONE"))
        snprintf(out, cap, "+1 555-01%02u", n % 100);  // 555-0100..0199: reserved for fiction
    else if (!strcmp(kind, "IP"))
        snprintf(out, cap, "192.0.2.%u", 1 + n % 254);  // TEST-NET-1
    else if (!strcmp(kind, "IBAN"))
        iban_surrogate(n, out, cap);
    else if (!strcmp(kind, "CARD"))
        snprintf(out, cap, "%s", cards[n % 4]);  // the networks' published test numbers
    else if (!strcmp(kind, "URL"))
        snprintf(out, cap, "https://example.com/resource/%u", n % 1000);
    else if (!strcmp(kind, "KEY"))
        snprintf(out, cap, "EXAMPLE-KEY-%06u", n % 1000000);
    else if (!strcmp(kind, "TERM"))
        snprintf(out, cap, "%s", names[n % 8]);
    else
        snprintf(out, cap, "%s-%04u", kind, n % 10000);
}

char *scrub_surrogates(const char *text, const char *salt) {
    pcre2_code *re = compile("<([A-Z][A-Z0-9_]*)_(\\d+)>", 0, "placeholder", "privacy");
    size_t len = strlen(text), at = 0, cap = len + 64, o = 0;
    char *out = ld_xmalloc(cap);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    uint64_t h = text_hash(salt ? salt : "", salt ? strlen(salt) : 0, 7);
    while (pcre2_match(re, (PCRE2_SPTR)text, len, at, 0, md, NULL) >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        char kind[64], stand[128];
        snprintf(kind, sizeof kind, "%.*s", (int)(ov[3] - ov[2]), text + ov[2]);
        unsigned n = (unsigned)(strtoul(text + ov[4], NULL, 10) + (h % 100003));
        surrogate(kind, n, stand, sizeof stand);
        size_t need = o + (ov[0] - at) + strlen(stand) + 1;
        if (need > cap) out = ld_xrealloc(out, cap = need * 2);
        memcpy(out + o, text + at, ov[0] - at), o += ov[0] - at;
        memcpy(out + o, stand, strlen(stand)), o += strlen(stand);
        at = ov[1];
    }
    if (o + (len - at) + 1 > cap) out = ld_xrealloc(out, cap = o + (len - at) + 1);
    memcpy(out + o, text + at, len - at), o += len - at;
    out[o] = 0;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return out;
}

// ---- llamaduo scrub -----------------------------------------------------------------------------------------

static void scrub_strings(const Scrubber *s, cJSON *node, ScrubMap *m, long *counts) {
    if (cJSON_IsString(node)) {
        char *t = scrub_text(s, node->valuestring, m, counts);
        if (!t) {
            fprintf(stderr, "scrub: %s\n", ld_last_error());
            t = ld_xstrdup("<NOT SEARCHABLE>");
        }
        cJSON_SetValuestring(node, t);
        free(t);
    }
    for (cJSON *c = node->child; c; c = c->next) scrub_strings(s, c, m, counts);
}

int privacy_report_file(const Scrubber *s, const char *path, int show, FILE *out) {
    cJSON **items;
    int *lines, n;
    if (jsonl_read(path, &items, &lines, &n, 1)) return -1;
    long total[PII_KINDS] = {0};
    int shown[PII_KINDS] = {0}, records_with = 0;
    for (int i = 0; i < n; i++) {
        ScrubMap *m = scrub_map_new();
        long counts[PII_KINDS] = {0};
        scrub_strings(s, items[i], m, counts);
        long found = 0;
        for (int k = 0; k < PII_KINDS; k++) found += counts[k], total[k] += counts[k];
        records_with += found > 0;
        for (int e = 0; e < m->n; e++) {
            int k = 0;
            while (k < PII_CUSTOM && (!k_placeholder[k] || strncmp(m->e[e].placeholder + 1, k_placeholder[k], strlen(k_placeholder[k]))))
                k++;
            if (shown[k]++ < 3) fprintf(out, "%s:%d: %s %s -> %s\n", path, lines[i], k_pii_names[k], m->e[e].original, m->e[e].placeholder);
        }
        if (show && found) {
            char *t = cJSON_PrintUnformatted(items[i]);
            fprintf(out, "%s\n", t);
            free(t);
        }
        scrub_map_free(m);
    }
    long all = 0;
    for (int k = 0; k < PII_KINDS; k++) all += total[k];
    fprintf(out, "%s: %d records, %d with finds, %ld finds", path, n, records_with, all);
    for (int k = 0, first = 1; k < PII_KINDS; k++)
        if (total[k]) fprintf(out, "%s%ld %s", first ? " (" : ", ", total[k], k_pii_names[k]), first = 0;
    fprintf(out, "%s\n", all ? ")" : "");
    for (int i = 0; i < n; i++) cJSON_Delete(items[i]);
    free(items), free(lines);
    return 0;
}
