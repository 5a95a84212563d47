// defines: error reporting, file mapping, small helpers shared by engine/ and host/
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// Errors: a failing function returns NULL/-1 and leaves one line here naming the file and the problem.
void ld_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ld_last_error(void);

// A read-only memory map of a whole file (falls back to nothing: a failure is an error).
typedef struct {
    const uint8_t *data;
    size_t size;
} MappedFile;
int ld_map_file(const char *path, MappedFile *out);
void ld_unmap_file(MappedFile *f);

// Reads a whole file into a NUL-terminated heap buffer; *len gets the byte count (may be NULL).
char *ld_read_file(const char *path, size_t *len);

void *ld_xmalloc(size_t n);  // aborts with a message on out-of-memory: callers never see NULL
void *ld_xcalloc(size_t n, size_t size);
void *ld_xrealloc(void *p, size_t n);
char *ld_xstrdup(const char *s);

// Writing a file so that a crash leaves the old file or the new one, never half of one: write to the
// returned FILE (a temp file beside path), then ld_atomic_commit flushes, fsyncs and renames it over path
// (ok = 0 discards it instead). Both return NULL / -1 with an error naming the file.
FILE *ld_atomic_open(const char *path, char **tmp_out);
int ld_atomic_commit(FILE *f, char *tmp, const char *path, int ok);

int ld_is_dir(const char *path);
int ld_file_exists(const char *path);
char *ld_path_join(const char *dir, const char *name);  // heap string
// piece (NULL: nothing) appended to the heap string *acc of *len bytes, which stays NUL-terminated.
void ld_str_append(char **acc, size_t *len, const char *piece);
int ld_mkdir_p(const char *path);  // mkdir -p; -1 with an error naming it

double ld_time_s(void);  // monotonic seconds

// UTF-8: the length of the valid character at s (1..4), or 0 when invalid or truncated; and a copy of s
// with every invalid byte replaced by U+FFFD (as HF decoders do). *out_len may be NULL.
int ld_utf8_char_len(const uint8_t *s, size_t n);
long ld_utf8_invalid_at(const char *s, size_t n);  // byte offset of the first invalid sequence, or -1 when all valid
char *ld_utf8_repair(const char *s, size_t n, size_t *out_len);
// A copy of at most max bytes of s, cut at a character boundary (for excerpts in messages and records).
char *ld_utf8_prefix(const char *s, size_t max);
