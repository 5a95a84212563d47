#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint64_t fnv1a(const char *s, uint32_t n) {
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n * 2) c <<= 1;
    return c;
}

void strmap_init(StrMap *m, size_t expected) {
    m->cap = pow2_at_least(expected);
    m->n = 0;
    m->keys = ld_xcalloc(m->cap, sizeof(char *));
    m->lens = ld_xcalloc(m->cap, sizeof(uint32_t));
    m->vals = ld_xcalloc(m->cap, sizeof(int));
}

void strmap_free(StrMap *m) {
    for (size_t i = 0; i < m->cap; i++) free((char *)m->keys[i]);
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static void strmap_grow(StrMap *m) {
    StrMap g;
    strmap_init(&g, m->cap);
    for (size_t i = 0; i < m->cap; i++)  // moves the owned keys over
        if (m->keys[i]) {
            size_t j = fnv1a(m->keys[i], m->lens[i]) & (g.cap - 1);
            while (g.keys[j]) j = (j + 1) & (g.cap - 1);
            g.keys[j] = m->keys[i], g.lens[j] = m->lens[i], g.vals[j] = m->vals[i];
            g.n++;
        }
    free(m->keys);
    free(m->lens);
    free(m->vals);
    *m = g;
}

void strmap_put(StrMap *m, const char *key, uint32_t len, int val) {
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    size_t i = fnv1a(key, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->lens[i] == len && !memcmp(m->keys[i], key, len)) {
            m->vals[i] = val;
            return;
        }
        i = (i + 1) & (m->cap - 1);
    }
    char *copy = ld_xmalloc(len + 1);
    memcpy(copy, key, len);
    copy[len] = 0;
    m->keys[i] = copy;
    m->lens[i] = len;
    m->vals[i] = val;
    m->n++;
}

int strmap_get(const StrMap *m, const char *key, uint32_t len, int def) {
    if (!m->cap) return def;
    size_t i = fnv1a(key, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->lens[i] == len && !memcmp(m->keys[i], key, len)) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return def;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

void u64map_init(U64Map *m, size_t expected) {
    m->cap = pow2_at_least(expected);
    m->n = 0;
    m->keys = ld_xcalloc(m->cap, sizeof(uint64_t));
    m->a = ld_xcalloc(m->cap, sizeof(int));
    m->b = ld_xcalloc(m->cap, sizeof(int));
    m->used = ld_xcalloc(m->cap, 1);
}

void u64map_free(U64Map *m) {
    free(m->keys);
    free(m->a);
    free(m->b);
    free(m->used);
    memset(m, 0, sizeof *m);
}

void u64map_put(U64Map *m, uint64_t key, int a, int b) {
    if ((m->n + 1) * 2 > m->cap) {
        U64Map g;
        u64map_init(&g, m->cap);
        for (size_t i = 0; i < m->cap; i++)
            if (m->used[i]) u64map_put(&g, m->keys[i], m->a[i], m->b[i]);
        u64map_free(m);
        *m = g;
    }
    size_t i = mix64(key) & (m->cap - 1);
    while (m->used[i]) {
        if (m->keys[i] == key) return;
        i = (i + 1) & (m->cap - 1);
    }
    m->used[i] = 1;
    m->keys[i] = key;
    m->a[i] = a;
    m->b[i] = b;
    m->n++;
}

int u64map_get(const U64Map *m, uint64_t key, int *a, int *b) {
    if (!m->cap) return 0;
    size_t i = mix64(key) & (m->cap - 1);
    while (m->used[i]) {
        if (m->keys[i] == key) {
            *a = m->a[i];
            *b = m->b[i];
            return 1;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return 0;
}
