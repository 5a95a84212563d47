// defines: the privacy scrubber (privacy: in a config) — before any request leaves, every user and assistant
// message is searched for personal and secret data: emails, phone numbers, IP addresses, IBANs (mod-97 checked),
// card numbers (Luhn-checked), URLs carrying credentials or tokens, API-key-like strings, the user's own terms
// and patterns (PCRE2). Each find becomes a placeholder stable within the request (<EMAIL_1>, ...). The mapping
// stays in memory: it is never sent, logged or cached. Replies are mapped back where they reuse a placeholder,
// except where the caller keeps placeholders (synthetic data), which may instead get realistic stand-ins
// (surrogates) of the same kind. A system message is not rewritten: one that matches is refused before sending.
#pragma once
#include <cjson/cJSON.h>
#include <stdio.h>

typedef enum { PII_EMAIL, PII_PHONE, PII_IP, PII_IBAN, PII_CARD, PII_URL, PII_KEY, PII_TERM, PII_CUSTOM, PII_KINDS } PiiKind;
extern const char *const k_pii_names[PII_KINDS];  // "email", ... as configured and reported

typedef struct {
    int enabled;
    const cJSON *kinds;  // list of kind names to look for (NULL: all built-in kinds)
    const cJSON *terms;  // list of names or terms (case-insensitive, whole words)
    const char *terms_file;  // one term per line
    const cJSON *patterns;  // list of {name, regex}
    int surrogates;  // synthetic records get stand-ins instead of placeholders
} PrivacyConfig;

// The privacy: section (NULL: not given) into c; enabled is its `enabled`, else default_on. -1 with an error naming
// the key in file.
int privacy_config_read(const cJSON *section, const char *file, int default_on, PrivacyConfig *c);

typedef struct Scrubber Scrubber;
typedef struct ScrubMap ScrubMap;  // one request's placeholders and what they stand for

// Compiles the configured patterns; NULL with an error naming the privacy key in file.
Scrubber *scrubber_new(const PrivacyConfig *c, const char *file);
void scrubber_free(Scrubber *s);

ScrubMap *scrub_map_new(void);
void scrub_map_free(ScrubMap *m);
// text with every find replaced by its placeholder in m (the same string, the same placeholder); counts[kind]
// incremented per find (may be NULL). Invalid UTF-8 is repaired first. Heap; NULL (with an error) when a pattern
// could not search the text (a match limit): the caller refuses the request rather than send it half scrubbed.
char *scrub_text(const Scrubber *s, const char *text, ScrubMap *m, long counts[PII_KINDS]);
// Placeholder-like strings text already holds (<EMAIL_3>): m numbers its own above them, so they never collide.
void scrub_map_reserve(ScrubMap *m, const char *text);
// The first find in text (kind out), or -1: for what must not leave unscrubbed.
int scrub_find(const Scrubber *s, const char *text, int *kind);
// text with m's placeholders back to what they stand for (heap); json: text is JSON, so the originals go in escaped
// as string content (a name with a quote keeps the reply parseable).
char *scrub_restore(const ScrubMap *m, const char *text, int json);
// `llamaduo scrub`: every string of every JSONL record in path scrubbed as a request would be (each record its own
// mapping), printed to out: counts by kind, the first finds of each kind, and with show every scrubbed record.
int privacy_report_file(const Scrubber *s, const char *path, int show, FILE *out);
// text with every placeholder (<KIND_N>) replaced by a realistic stand-in of its kind, stable for (salt, N). Heap.
char *scrub_surrogates(const char *text, const char *salt);
