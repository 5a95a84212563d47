#include "text.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util.h"

char *text_normalize(const char *s) {
    utf8proc_uint8_t *m = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, 0, &m,
                                      UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD);
    if (n < 0) {  // invalid UTF-8: repair, then normalise
        char *fixed = ld_utf8_repair(s, strlen(s), NULL);
        n = utf8proc_map((const utf8proc_uint8_t *)fixed, 0, &m,
                         UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD);
        free(fixed);
        if (n < 0) return ld_xstrdup("");
    }
    char *o = ld_xmalloc((size_t)n + 1);
    size_t k = 0;
    int space = 0;
    for (utf8proc_ssize_t i = 0; i < n;) {
        int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate(m + i, n - i, &cp);
        if (l <= 0) break;
        utf8proc_category_t c = utf8proc_category(cp);
        int ws = cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v' || c == UTF8PROC_CATEGORY_ZS ||
                 c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
        if (ws) {
            space = k > 0;
        } else {
            if (space) o[k++] = ' ';
            space = 0;
            memcpy(o + k, m + i, (size_t)l);
            k += (size_t)l;
        }
        i += l;
    }
    o[k] = 0;
    free(m);
    return o;
}

static int is_word_cp(int32_t cp) {
    switch (utf8proc_category(cp)) {
        case UTF8PROC_CATEGORY_LU:
        case UTF8PROC_CATEGORY_LL:
        case UTF8PROC_CATEGORY_LT:
        case UTF8PROC_CATEGORY_LM:
        case UTF8PROC_CATEGORY_LO:
        case UTF8PROC_CATEGORY_MN:
        case UTF8PROC_CATEGORY_MC:
        case UTF8PROC_CATEGORY_ME:
        case UTF8PROC_CATEGORY_ND:
        case UTF8PROC_CATEGORY_NL:
        case UTF8PROC_CATEGORY_NO:
            return 1;
        default:
            return 0;
    }
}

int text_words(const char *s, int **starts, int **lens) {
    size_t n = strlen(s);
    int cap = 16, count = 0, in = 0;
    *starts = ld_xmalloc(sizeof(int) * (size_t)cap);
    *lens = ld_xmalloc(sizeof(int) * (size_t)cap);
    for (size_t i = 0; i < n;) {
        int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (l <= 0) l = 1, cp = -1;
        int w = cp >= 0 && is_word_cp(cp);
        if (w && !in) {
            if (count == cap) {
                cap *= 2;
                *starts = ld_xrealloc(*starts, sizeof(int) * (size_t)cap);
                *lens = ld_xrealloc(*lens, sizeof(int) * (size_t)cap);
            }
            (*starts)[count] = (int)i;
            (*lens)[count++] = 0;
        }
        if (w) (*lens)[count - 1] += (int)l;
        in = w;
        i += (size_t)l;
    }
    return count;
}

uint64_t text_hash(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull ^ (seed * 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

char *text_sha256_hex(const char *const *parts, int n) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int i = 0; i < n; i++) EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + (i + 1 < n));  // NUL between parts
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    char *hex = ld_xmalloc(65);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}
