// defines: the text utilities the service-LLM side shares — normalisation for comparisons and word
// splitting (Unicode-aware), with 64-bit hashing for sets of words and n-grams.
#pragma once
#include <stddef.h>
#include <stdint.h>

// NFKC + case folding, whitespace runs collapsed to one space, trimmed. Heap string.
char *text_normalize(const char *s);

// Words of a normalised text: maximal runs of letters, digits and marks. Returns the count; *starts and
// *lens (heap) give each word's byte range in `s`.
int text_words(const char *s, int **starts, int **lens);

uint64_t text_hash(const void *data, size_t n, uint64_t seed);

// Hex SHA-256 of the parts, separated by NUL bytes (heap).
char *text_sha256_hex(const char *const *parts, int n);
