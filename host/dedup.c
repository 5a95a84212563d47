#include "dedup.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "util.h"

typedef struct {
    uint64_t *v;  // sorted, unique shingle hashes
    int n;
} Shingles;

typedef struct {
    int id;
    uint64_t norm_hash;
    Shingles sh;
} Entry;

typedef struct {
    uint64_t key;
    int entry;
} Bucket;

struct Dedup {
    double threshold;
    int shingle, num_perm, bands, rows;
    Entry *entries;
    int n, cap;
    Bucket *buckets;  // one flat list per band of (band hash, entry), unsorted: scanned via a hash index below
    size_t n_buckets, cap_buckets;
    // open-addressing index: band key -> first bucket index chain
    size_t idx_cap;
    int64_t *idx_head;
    uint64_t *idx_key;
    int64_t *next;  // chain through buckets
};

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static Shingles shingles_of(const char *norm, int k) {
    int *st, *ln, nw = text_words(norm, &st, &ln);
    Shingles s = {0};
    int n = nw >= k ? nw - k + 1 : (nw > 0 ? 1 : 0);
    s.v = ld_xmalloc(sizeof(uint64_t) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        uint64_t h = 0x243f6a8885a308d3ull;
        for (int j = i; j < i + k && j < nw; j++) h = text_hash(norm + st[j], (size_t)ln[j], h);
        s.v[i] = h;
    }
    qsort(s.v, (size_t)n, sizeof(uint64_t), cmp_u64);
    for (int i = 0; i < n; i++)
        if (s.n == 0 || s.v[s.n - 1] != s.v[i]) s.v[s.n++] = s.v[i];
    free(st), free(ln);
    return s;
}

static double jaccard(const Shingles *a, const Shingles *b) {
    if (!a->n && !b->n) return 1.0;
    int i = 0, j = 0, inter = 0;
    while (i < a->n && j < b->n) {
        if (a->v[i] == b->v[j])
            inter++, i++, j++;
        else if (a->v[i] < b->v[j])
            i++;
        else
            j++;
    }
    return (double)inter / (a->n + b->n - inter);
}

// Band/row split: the largest row count whose candidate probability at the threshold stays above 99.9%,
// so pairs at or above the threshold are (almost) never missed; the exact Jaccard rejects the extra ones.
static void choose_bands(Dedup *d) {
    d->rows = 1;
    for (int r = 1; r <= d->num_perm; r++) {
        if (d->num_perm % r) continue;
        int b = d->num_perm / r;
        double p_hit = 1 - pow(1 - pow(d->threshold, r), b);
        if (p_hit >= 0.999) d->rows = r;
    }
    d->bands = d->num_perm / d->rows;
}

Dedup *dedup_new(double threshold, int shingle, int num_perm) {
    Dedup *d = ld_xcalloc(1, sizeof *d);
    d->threshold = threshold;
    d->shingle = shingle > 0 ? shingle : 3;
    d->num_perm = num_perm > 0 ? num_perm : 128;
    choose_bands(d);
    d->idx_cap = 1024;
    d->idx_head = ld_xmalloc(sizeof(int64_t) * d->idx_cap);
    d->idx_key = ld_xmalloc(sizeof(uint64_t) * d->idx_cap);
    for (size_t i = 0; i < d->idx_cap; i++) d->idx_head[i] = -1;
    return d;
}

void dedup_free(Dedup *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) free(d->entries[i].sh.v);
    free(d->entries);
    free(d->buckets);
    free(d->idx_head);
    free(d->idx_key);
    free(d->next);
    free(d);
}

static void minhash(const Dedup *d, const Shingles *s, uint64_t *sig) {
    for (int p = 0; p < d->num_perm; p++) {
        uint64_t m = UINT64_MAX;
        for (int i = 0; i < s->n; i++) {
            uint64_t h = text_hash(&s->v[i], 8, (uint64_t)p + 1);
            if (h < m) m = h;
        }
        sig[p] = m;
    }
}

static uint64_t band_key(const Dedup *d, const uint64_t *sig, int band) {
    return text_hash(sig + (size_t)band * d->rows, sizeof(uint64_t) * (size_t)d->rows, (uint64_t)band * 7919 + 1);
}

// The normalised text's hash goes into the same index under its own key space.
static uint64_t exact_key(uint64_t norm_hash) { return text_hash(&norm_hash, 8, 0xe8ac7ull); }

static size_t idx_slot(const Dedup *d, uint64_t key) {
    size_t i = key & (d->idx_cap - 1);
    while (d->idx_head[i] >= 0 && d->idx_key[i] != key) i = (i + 1) & (d->idx_cap - 1);
    return i;
}

static void idx_grow(Dedup *d) {
    size_t old_cap = d->idx_cap;
    int64_t *oh = d->idx_head;
    uint64_t *ok = d->idx_key;
    d->idx_cap *= 2;
    d->idx_head = ld_xmalloc(sizeof(int64_t) * d->idx_cap);
    d->idx_key = ld_xmalloc(sizeof(uint64_t) * d->idx_cap);
    for (size_t i = 0; i < d->idx_cap; i++) d->idx_head[i] = -1;
    for (size_t i = 0; i < old_cap; i++)
        if (oh[i] >= 0) {
            size_t j = idx_slot(d, ok[i]);
            d->idx_head[j] = oh[i];
            d->idx_key[j] = ok[i];
        }
    free(oh), free(ok);
}

DedupResult dedup_check(Dedup *d, const char *text) {
    DedupResult r = {DEDUP_UNIQUE, -1, 0};
    char *norm = text_normalize(text);
    uint64_t nh = text_hash(norm, strlen(norm), 0);
    size_t xs = idx_slot(d, exact_key(nh));
    for (int64_t k = d->idx_head[xs]; k >= 0; k = d->next[k])
        if (d->entries[d->buckets[k].entry].norm_hash == nh) {
            free(norm);
            return (DedupResult){DEDUP_EXACT, d->entries[d->buckets[k].entry].id, 1.0};
        }
    Shingles s = shingles_of(norm, d->shingle);
    uint64_t *sig = ld_xmalloc(sizeof(uint64_t) * (size_t)d->num_perm);
    minhash(d, &s, sig);
    uint8_t *seen = ld_xcalloc((size_t)d->n + 1, 1);
    for (int b = 0; b < d->bands; b++) {
        size_t slot = idx_slot(d, band_key(d, sig, b));
        for (int64_t k = d->idx_head[slot]; k >= 0; k = d->next[k]) {
            int e = d->buckets[k].entry;
            if (seen[e]) continue;
            seen[e] = 1;
            double j = jaccard(&s, &d->entries[e].sh);
            if (j >= d->threshold && j > r.jaccard) r = (DedupResult){DEDUP_NEAR, d->entries[e].id, j};
        }
    }
    free(seen), free(sig), free(s.v), free(norm);
    return r;
}

void dedup_add(Dedup *d, const char *text, int id) {
    char *norm = text_normalize(text);
    if (d->n == d->cap) d->entries = ld_xrealloc(d->entries, sizeof(Entry) * (size_t)(d->cap = d->cap ? d->cap * 2 : 64));
    Entry *e = &d->entries[d->n];
    e->id = id;
    e->norm_hash = text_hash(norm, strlen(norm), 0);
    e->sh = shingles_of(norm, d->shingle);
    uint64_t *sig = ld_xmalloc(sizeof(uint64_t) * (size_t)d->num_perm);
    minhash(d, &e->sh, sig);
    for (int b = -1; b < d->bands; b++) {  // b = -1: the exact-text key
        if ((d->n_buckets + 1) * 2 > d->idx_cap) idx_grow(d);
        if (d->n_buckets == d->cap_buckets) {
            d->cap_buckets = d->cap_buckets ? d->cap_buckets * 2 : 256;
            d->buckets = ld_xrealloc(d->buckets, sizeof(Bucket) * d->cap_buckets);
            d->next = ld_xrealloc(d->next, sizeof(int64_t) * d->cap_buckets);
        }
        uint64_t key = b < 0 ? exact_key(e->norm_hash) : band_key(d, sig, b);
        size_t slot = idx_slot(d, key);
        d->buckets[d->n_buckets] = (Bucket){key, d->n};
        d->next[d->n_buckets] = d->idx_head[slot];
        d->idx_head[slot] = (int64_t)d->n_buckets;
        d->idx_key[slot] = key;
        d->n_buckets++;
    }
    d->n++;
    free(sig);
    free(norm);
}
