#include "decontam.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "util.h"

typedef struct {
    uint64_t key;
    int ref;
} Gram;

struct Decontam {
    int n;
    Gram *grams;  // (n-gram hash, reference id), sorted by hash once references are in
    size_t count, cap;
    int sorted;
};

static int cmp_gram(const void *a, const void *b) {
    const Gram *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->ref - y->ref;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// Hashes of the text's word n-grams (one hash of the whole run when it has fewer than n words).
static int ngrams(const char *text, int n, uint64_t **out) {
    char *norm = text_normalize(text);
    int *st, *ln, nw = text_words(norm, &st, &ln);
    int k = nw >= n ? nw - n + 1 : (nw > 0);
    *out = ld_xmalloc(sizeof(uint64_t) * (size_t)(k + 1));
    for (int i = 0; i < k; i++) {
        uint64_t h = 0x9e3779b97f4a7c15ull;
        for (int j = i; j < i + n && j < nw; j++) h = text_hash(norm + st[j], (size_t)ln[j], h);
        (*out)[i] = h;
    }
    free(st), free(ln), free(norm);
    return k;
}

Decontam *decontam_new(int n) {
    Decontam *d = ld_xcalloc(1, sizeof *d);
    d->n = n > 0 ? n : 8;
    return d;
}

void decontam_free(Decontam *d) {
    if (!d) return;
    free(d->grams);
    free(d);
}

void decontam_add_reference(Decontam *d, const char *text, int id) {
    uint64_t *g;
    int k = ngrams(text, d->n, &g);
    for (int i = 0; i < k; i++) {
        if (d->count == d->cap) d->grams = ld_xrealloc(d->grams, sizeof(Gram) * (d->cap = d->cap ? d->cap * 2 : 1024));
        d->grams[d->count++] = (Gram){g[i], id};
    }
    d->sorted = 0;
    free(g);
}

double decontam_overlap(const Decontam *dc, const char *text, int *ref_id) {
    Decontam *d = (Decontam *)dc;
    if (!d->sorted) {  // sorted lazily, once, after the references are in
        qsort(d->grams, d->count, sizeof(Gram), cmp_gram);
        d->sorted = 1;
    }
    uint64_t *g;
    int k = ngrams(text, d->n, &g);
    *ref_id = -1;
    if (!k) {
        free(g);
        return 0;
    }
    // count, per reference, how many of the candidate's distinct n-grams it holds
    int *refs = NULL, *hits = NULL, n_refs = 0;
    qsort(g, (size_t)k, sizeof(uint64_t), cmp_u64);
    int distinct = 0;
    for (int i = 0; i < k; i++) {
        if (i && g[i] == g[i - 1]) continue;
        distinct++;
        size_t lo = 0, hi = d->count;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (d->grams[mid].key < g[i])
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t j = lo; j < d->count && d->grams[j].key == g[i]; j++) {
            if (j > lo && d->grams[j].ref == d->grams[j - 1].ref) continue;  // one hit per reference
            int r = 0;
            while (r < n_refs && refs[r] != d->grams[j].ref) r++;
            if (r == n_refs) {
                refs = ld_xrealloc(refs, sizeof(int) * (size_t)(n_refs + 1));
                hits = ld_xrealloc(hits, sizeof(int) * (size_t)(n_refs + 1));
                refs[n_refs] = d->grams[j].ref;
                hits[n_refs++] = 0;
            }
            hits[r]++;
        }
    }
    double best = 0;
    for (int r = 0; r < n_refs; r++)
        if ((double)hits[r] / distinct > best) best = (double)hits[r] / distinct, *ref_id = refs[r];
    free(refs), free(hits), free(g);
    return best;
}
