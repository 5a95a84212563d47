#include "metrics.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "util.h"

static void trimmed(const char *s, const char **start, size_t *len) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    *start = s, *len = n;
}

int metric_exact_match(const char *candidate, const char *reference) {
    const char *a, *b;
    size_t na, nb;
    trimmed(candidate, &a, &na), trimmed(reference, &b, &nb);
    return na == nb && !memcmp(a, b, na);
}

static uint64_t *word_hashes(const char *s, int *n) {
    char *norm = text_normalize(s);
    int *st, *ln;
    *n = text_words(norm, &st, &ln);
    uint64_t *h = ld_xmalloc(sizeof(uint64_t) * (size_t)(*n + 1));
    for (int i = 0; i < *n; i++) h[i] = text_hash(norm + st[i], (size_t)ln[i], 0);
    free(st), free(ln), free(norm);
    return h;
}

int metric_normalized_exact_match(const char *candidate, const char *reference) {
    int m, n;  // the same words in the same order: case, spacing and punctuation aside
    uint64_t *a = word_hashes(candidate, &m), *b = word_hashes(reference, &n);
    int eq = m == n && !memcmp(a, b, sizeof(uint64_t) * (size_t)m);
    free(a), free(b);
    return eq;
}

double metric_rouge_l(const char *candidate, const char *reference) {
    int m, n;
    uint64_t *a = word_hashes(candidate, &m), *b = word_hashes(reference, &n);
    double f = 0;
    if (m && n) {
        int *prev = ld_xcalloc((size_t)n + 1, sizeof(int)), *cur = ld_xcalloc((size_t)n + 1, sizeof(int));
        for (int i = 1; i <= m; i++) {  // longest common subsequence, two rows
            for (int j = 1; j <= n; j++) cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
            int *t = prev;
            prev = cur;
            cur = t;
        }
        int lcs = prev[n];
        double p = (double)lcs / m, r = (double)lcs / n;
        f = lcs ? 2 * p * r / (p + r) : 0;
        free(prev), free(cur);
    } else if (!m && !n) {
        f = 1;
    }
    free(a), free(b);
    return f;
}

// Character n-gram counts of a text with whitespace removed (sacrebleu's chrF default), as sorted hashes.
static int char_ngrams(const char *s, int n, uint64_t **out) {
    size_t len = strlen(s);
    int *starts = ld_xmalloc(sizeof(int) * (len + 1)), nc = 0;
    char *t = ld_xmalloc(len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        int l = ld_utf8_char_len((const uint8_t *)s + i, len - i);
        if (!l) l = 1;
        if (!(l == 1 && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))) {
            starts[nc++] = (int)k;
            memcpy(t + k, s + i, (size_t)l);
            k += (size_t)l;
        }
        i += (size_t)l;
    }
    starts[nc] = (int)k;
    int cnt = nc >= n ? nc - n + 1 : 0;
    *out = ld_xmalloc(sizeof(uint64_t) * (size_t)(cnt + 1));
    for (int i = 0; i < cnt; i++) (*out)[i] = text_hash(t + starts[i], (size_t)(starts[i + n] - starts[i]), (uint64_t)n);
    free(starts), free(t);
    return cnt;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double metric_chrf(const char *candidate, const char *reference) {
    const int N = 6;
    const double beta2 = 4.0;
    double psum = 0, rsum = 0;
    int orders = 0;
    for (int n = 1; n <= N; n++) {
        uint64_t *a, *b;
        int na = char_ngrams(candidate, n, &a), nb = char_ngrams(reference, n, &b);
        if (na && nb) {
            qsort(a, (size_t)na, 8, cmp_u64);
            qsort(b, (size_t)nb, 8, cmp_u64);
            int i = 0, j = 0, match = 0;  // multiset intersection
            while (i < na && j < nb) {
                if (a[i] == b[j])
                    match++, i++, j++;
                else if (a[i] < b[j])
                    i++;
                else
                    j++;
            }
            psum += (double)match / na;
            rsum += (double)match / nb;
            orders++;
        }  // orders where a side has no n-grams are left out of the averages (sacrebleu's effective order)
        free(a), free(b);
    }
    if (!orders) return 0.0;  // as sacrebleu: no order with n-grams on both sides
    double p = psum / orders, r = rsum / orders;
    return (p + r) > 0 ? (1 + beta2) * p * r / (beta2 * p + r) : 0;
}
