#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

static _Thread_local char g_error[1024];

void ld_set_error(const char *fmt, ...) {
    char msg[sizeof g_error];  // formatted apart first: the last error may be one of the arguments
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(g_error, msg, sizeof msg);
}

const char *ld_last_error(void) { return g_error[0] ? g_error : "unknown error"; }

int ld_map_file(const char *path, MappedFile *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        ld_set_error("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ld_set_error("%s: not a regular file", path);
        close(fd);
        return -1;
    }
    out->size = (size_t)st.st_size;
    if (out->size == 0) {
        ld_set_error("%s: file is empty", path);
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        ld_set_error("%s: mmap failed: %s", path, strerror(errno));
        return -1;
    }
    out->data = p;
    return 0;
}

void ld_unmap_file(MappedFile *f) {
    if (f->data) munmap((void *)f->data, f->size);
    f->data = NULL;
    f->size = 0;
}

char *ld_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        ld_set_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = ld_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = ld_xrealloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, fp);
        if (r == 0) break;
        n += r;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        ld_set_error("%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static void oom(size_t n) {
    fprintf(stderr, "llamaduo: error: out of memory allocating %zu bytes\n", n);
    exit(3);
}

void *ld_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}
void *ld_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}
void *ld_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}
char *ld_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ld_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

int ld_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
int ld_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
void ld_str_append(char **acc, size_t *len, const char *piece) {
    if (!piece) return;
    size_t n = strlen(piece);
    *acc = ld_xrealloc(*acc, *len + n + 1);
    memcpy(*acc + *len, piece, n + 1);
    *len += n;
}

char *ld_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = ld_xmalloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

double ld_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int ld_utf8_char_len(const uint8_t *s, size_t n) {
    int32_t cp;
    utf8proc_ssize_t r = utf8proc_iterate(s, (utf8proc_ssize_t)(n > 4 ? 4 : n), &cp);
    return r > 0 ? (int)r : 0;
}

long ld_utf8_invalid_at(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int l = ld_utf8_char_len((const uint8_t *)s + i, n - i);
        if (!l) return (long)i;
        i += (size_t)l;
    }
    return -1;
}

char *ld_utf8_repair(const char *s, size_t n, size_t *out_len) {
    char *o = ld_xmalloc(n * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int l = ld_utf8_char_len((const uint8_t *)s + i, n - i);
        if (l) {
            memcpy(o + k, s + i, (size_t)l);
            k += (size_t)l;
            i += (size_t)l;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    o[k] = 0;
    if (out_len) *out_len = k;
    return o;
}

int ld_mkdir_p(const char *path) {
    char *p = ld_xstrdup(path);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(p, 0755);
            *c = '/';
        }
    mkdir(p, 0755);
    free(p);
    if (!ld_is_dir(path)) {
        ld_set_error("%s: cannot create the directory", path);
        return -1;
    }
    return 0;
}

FILE *ld_atomic_open(const char *path, char **tmp_out) {
    size_t n = strlen(path) + 8;
    char *tmp = ld_xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        ld_set_error("%s: cannot write: %s", tmp, strerror(errno));
        free(tmp);
        return NULL;
    }
    *tmp_out = tmp;
    return f;
}

int ld_atomic_commit(FILE *f, char *tmp, const char *path, int ok) {
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        ld_set_error("%s: write failed", path);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

char *ld_utf8_prefix(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;  // s[n] continues a character: cut before it
    }
    char *o = ld_xmalloc(n + 1);
    memcpy(o, s, n);
    o[n] = 0;
    return o;
}
