// defines: two open-addressing hash maps the tokenizer needs: byte string -> int, and u64 -> (int, int).
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char **keys;  // owned copies
    uint32_t *lens;
    int *vals;
    size_t cap, n;
} StrMap;

void strmap_init(StrMap *m, size_t expected);
void strmap_free(StrMap *m);
void strmap_put(StrMap *m, const char *key, uint32_t len, int val);  // overwrites
int strmap_get(const StrMap *m, const char *key, uint32_t len, int def);

typedef struct {
    uint64_t *keys;
    int *a, *b;
    uint8_t *used;
    size_t cap, n;
} U64Map;

void u64map_init(U64Map *m, size_t expected);
void u64map_free(U64Map *m);
void u64map_put(U64Map *m, uint64_t key, int a, int b);  // keeps the first value put for a key
int u64map_get(const U64Map *m, uint64_t key, int *a, int *b);  // 1 when found
