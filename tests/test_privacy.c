// The privacy scrubber (host/privacy.c) and its place in the client (host/llm_client.c): every kind found, checksums
// applied (a card that fails Luhn, an IBAN that fails mod-97 is no find), dates, versions and times left alone,
// placeholders stable within a request and mapped back, surrogates of the right kind, the user's terms and patterns,
// bad privacy settings refused by key, and a system message that matches refused before anything is sent.
#include <stdlib.h>
#include <string.h>

#include "llm_client.h"
#include "privacy.h"
#include "test_util.h"
#include "util.h"

static Scrubber *make(const char *privacy_json) {
    cJSON *o = cJSON_Parse(privacy_json);
    PrivacyConfig c = {.enabled = 1, .kinds = cJSON_GetObjectItem(o, "kinds"), .terms = cJSON_GetObjectItem(o, "terms"),
                       .patterns = cJSON_GetObjectItem(o, "patterns")};
    Scrubber *s = scrubber_new(&c, "t.yaml");
    cJSON_Delete(o);  // the scrubber keeps no pointer into the config
    return s;
}

static long finds(const Scrubber *s, const char *text, PiiKind kind, char **out) {
    ScrubMap *m = scrub_map_new();
    long counts[PII_KINDS] = {0};
    char *t = scrub_text(s, text, m, counts);
    if (out)
        *out = t;
    else
        free(t);
    scrub_map_free(m);
    return counts[kind];
}

static void test_kinds(void) {
    Scrubber *s = make("{}");
    struct {
        const char *text;
        PiiKind kind;
        long want;
    } cases[] = {
        {"write to jane.doe+tag@mail.example.co.uk today", PII_EMAIL, 1},
        {"call +44 20 7946 0958 or (415) 555-0132", PII_PHONE, 2},
        {"hosts 192.168.1.20 and 2001:db8:85a3::8a2e:370:7334", PII_IP, 2},
        {"IBAN DE89 3704 0044 0532 0130 00 please", PII_IBAN, 1},
        {"IBAN DE89 3704 0044 0532 0130 01 (bad check)", PII_IBAN, 0},
        {"card 4111-1111-1111-1111 and 378282246310005", PII_CARD, 2},
        {"not a card 4111 1111 1111 1112", PII_CARD, 0},
        {"clone https://bob:hunter2@git.example.com/repo.git, then https://x.io/a?id=3&token=abc123.", PII_URL, 2},
        {"keys sk-proj-AbCdEfGhIjKlMnOpQrSt and AKIAIOSFODNN7EXAMPLE and ghp_0123456789abcdefghijklmnopqrstuvwxyz", PII_KEY, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long n = finds(s, cases[i].text, cases[i].kind, NULL);
        CHECK(n == cases[i].want, "%s: %ld %s finds, want %ld", cases[i].text, n, k_pii_names[cases[i].kind], cases[i].want);
    }
    const char *clean = "Convert 2024-05-03 and March 10th 1985; version 1.2.3 at 12:30; 48 pairs; call 555-1234; id 1234567";
    char *t = NULL;
    long total = 0;
    for (int k = 0; k < PII_KINDS; k++) total += finds(s, clean, (PiiKind)k, k == 0 ? &t : NULL);
    CHECK(total == 0 && !strcmp(t, clean), "no false positive on dates, versions, times, short numbers: %s", t);
    free(t);

    ScrubMap *m = scrub_map_new();
    char *x = scrub_text(s, "jane@a.io wrote to bob@b.io; cc jane@a.io", m, NULL);
    CHECK(!strcmp(x, "<EMAIL_1> wrote to <EMAIL_2>; cc <EMAIL_1>"), "stable placeholders: %s", x);
    char *back = scrub_restore(m, "Reply sent to <EMAIL_2> (and <EMAIL_1>), not <EMAIL_3>", 0);
    CHECK(!strcmp(back, "Reply sent to bob@b.io (and jane@a.io), not <EMAIL_3>"), "restored: %s", back);
    free(x), free(back);
    scrub_map_free(m);
    scrubber_free(s);
}

// What the review found: each a way PII could have left, or the scrubber could have crashed.
static void test_hostile_text(void) {
    Scrubber *s = make("{}");
    char *t;
    CHECK(finds(s, "mail joe.bloggs@corp.com caf\xe9", PII_EMAIL, &t) == 1 && t && !strstr(t, "joe.bloggs"),
          "invalid UTF-8 elsewhere does not turn scrubbing off: %s", t ? t : "(null)");
    free(t);
    CHECK(finds(s, "call +15551234567, 07700900123 or 4155550132", PII_PHONE, &t) == 3, "unseparated phone numbers: %s", t);
    free(t);
    ScrubMap *m = scrub_map_new();
    scrub_map_reserve(m, "the student wrote <EMAIL_1> and <EMAIL_2>");
    char *x = scrub_text(s, "reference: ann@x.io", m, NULL);
    CHECK(!strcmp(x, "reference: <EMAIL_3>"), "placeholders already in the request are never given out again: %s", x);
    char *back = scrub_restore(m, "{\"reason\": \"<EMAIL_3> and <EMAIL_1>\"}", 0);
    CHECK(!strcmp(back, "{\"reason\": \"ann@x.io and <EMAIL_1>\"}"), "only its own placeholders are mapped back: %s", back);
    free(x), free(back);
    scrub_map_free(m);
    scrubber_free(s);

    s = make("{\"terms\": [\"O\\\"Brien\"]}");
    m = scrub_map_new();
    x = scrub_text(s, "ask O\"Brien", m, NULL);
    back = scrub_restore(m, "{\"reason\": \"see <TERM_1>\"}", 1);
    cJSON *j = cJSON_Parse(back);
    CHECK(j && !strcmp(cJSON_GetObjectItem(j, "reason")->valuestring, "see O\"Brien"), "a JSON reply stays JSON when mapped back: %s", back);
    cJSON_Delete(j);
    free(x), free(back);
    scrub_map_free(m);
    scrubber_free(s);

    s = make("{\"patterns\": [{\"name\": \"acct\", \"regex\": \"\\\\d*\"}]}");
    char text[128] = "";
    for (int i = 0; i < 28; i++) strcat(text, "1 ");
    strcat(text, "\xe2\x82\xac\xe2\x82\xac");  // empty matches next to multibyte characters (was a heap overflow)
    CHECK(finds(s, text, PII_CUSTOM, &t) == 28 && t && strstr(t, "<ACCT_1>") && strstr(t, "\xe2\x82\xac\xe2\x82\xac"), "empty matches: %s", t);
    free(t);
    scrubber_free(s);

    s = make("{\"patterns\": [{\"name\": \"acct\", \"regex\": \"(x+x+)+y|ACCT\\\\d+\"}]}");
    char slow[128];
    memset(slow, 'x', 60);
    strcpy(slow + 60, " ACCT12345");
    m = scrub_map_new();
    x = scrub_text(s, slow, m, NULL);
    CHECK(x == NULL && strstr(ld_last_error(), "refused"), "a pattern past its match limit fails closed: %s", x ? x : ld_last_error());
    free(x);
    scrub_map_free(m);
    scrubber_free(s);

    CHECK(!make("{\"patterns\": [{\"name\": \"id\", \"regex\": \"A\\\\d+\"}, {\"name\": \"id\", \"regex\": \"B\\\\d+\"}]}") &&
              strstr(ld_last_error(), "already in use"),
          "two patterns of one name are refused: %s", ld_last_error());
    CHECK(!make("{\"patterns\": [{\"name\": \"email\", \"regex\": \"x\"}]}") && strstr(ld_last_error(), "already in use"),
          "a built-in name is refused");
    CHECK(!make("{\"terms\": [\"caf\xe9\"]}") && strstr(ld_last_error(), "privacy.terms"), "a term that is not UTF-8 is refused: %s",
          ld_last_error());
}

static void test_terms_patterns(void) {
    Scrubber *s = make("{\"terms\": [\"Acme Corp\", \"Jane O'Neil\", \"a.b\"], \"patterns\": [{\"name\": \"employee id\", \"regex\": \"EMP-\\\\d{6}\"}]}");
    CHECK(s, "%s", ld_last_error());
    char *t;
    CHECK(finds(s, "acme corp hired jane o'neil; acmecorporation is not; a.b yes, axb no", PII_TERM, &t) == 3, "terms: %s", t);
    CHECK(strstr(t, "<TERM_1> hired <TERM_2>") && strstr(t, "axb no"), "terms whole words, any case, literal: %s", t);
    free(t);
    CHECK(finds(s, "badge EMP-123456 and EMP-12345", PII_CUSTOM, &t) == 1 && strstr(t, "<EMPLOYEE_ID_1>"), "custom pattern: %s", t);
    free(t);
    scrubber_free(s);
    s = make("{\"kinds\": [\"email\"]}");
    CHECK(finds(s, "a@b.io 192.168.0.1", PII_IP, NULL) == 0 && finds(s, "a@b.io", PII_EMAIL, NULL) == 1, "kinds limits the search");
    scrubber_free(s);
    CHECK(!make("{\"kinds\": [\"emails\"]}") && strstr(ld_last_error(), "privacy.kinds"), "unknown kind: %s", ld_last_error());
    CHECK(!make("{\"patterns\": [{\"name\": \"x\", \"regex\": \"([a-\"}]}") && strstr(ld_last_error(), "privacy.patterns[0].regex"),
          "bad pattern: %s", ld_last_error());
    CHECK(!make("{\"patterns\": [{\"regex\": \"x\"}]}") && strstr(ld_last_error(), "privacy.patterns[0]"), "pattern without a name");
    CHECK(!make("{\"terms\": [3]}") && strstr(ld_last_error(), "privacy.terms"), "terms must be strings");
}

static int luhn(const char *s) {
    int sum = 0, n = 0;
    for (int i = (int)strlen(s) - 1; i >= 0; i--) {
        if (s[i] < '0' || s[i] > '9') continue;
        int d = s[i] - '0';
        if (n++ % 2) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return sum % 10 == 0;
}

static void test_surrogates(void) {
    char *t = scrub_surrogates("Mail <EMAIL_1>, call <PHONE_2>, card <CARD_1>, IBAN <IBAN_1>, from <IP_1>, ask <TERM_3>", "rec-7");
    CHECK(!strchr(t, '<') && strstr(t, "@example.com") && strstr(t, "+1 555-01") && strstr(t, "192.0.2."), "stand-ins: %s", t);
    char *again = scrub_surrogates("Mail <EMAIL_1>", "rec-7");
    CHECK(strstr(t, again + 5) != NULL, "stable for the same record: %s / %s", t, again);
    Scrubber *s = make("{}");
    CHECK(finds(s, t, PII_CARD, NULL) == 1 && finds(s, t, PII_IBAN, NULL) == 1, "the card and IBAN stand-ins pass their checksums");
    const char *card = strstr(t, "card ") + 5;
    char num[32];
    snprintf(num, sizeof num, "%.19s", card);
    CHECK(luhn(num), "Luhn: %s", num);
    scrubber_free(s);
    free(t), free(again);
}

static void test_system_refused(void) {
    Scrubber *s = make("{}");
    ProviderConfig p = {.wire = WIRE_OPENAI, .base_url = "http://127.0.0.1:9/v1", .model = "m", .max_tokens = 8};
    ClientLimits l = client_limits_default();
    l.privacy = s, l.max_attempts = 1;
    LlmMessage msgs[] = {{"system", "Escalate to ops@acme.example.com"}, {"user", "hello"}};
    LlmJob job = {.req = {.messages = msgs, .n_messages = 2}};
    ClientStats st;
    CHECK(llm_run(&p, &l, NULL, &job, 1, NULL, NULL, &st) == -1 && strstr(ld_last_error(), "system message") &&
              strstr(ld_last_error(), "email"),
          "a system message with an email is refused before sending: %s", ld_last_error());
    CHECK(st.requests_sent == 0 && job.req.messages == msgs, "nothing sent, the caller's messages untouched");
    llm_job_clear(&job);
    scrubber_free(s);
}

int main(void) {
    test_kinds();
    test_terms_patterns();
    test_hostile_text();
    test_surrogates();
    test_system_refused();
    return test_finish("test_privacy");
}
