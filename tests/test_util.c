#include "test_util.h"

#include "util.h"

int g_failures;

int test_finish(const char *name) {
    if (g_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, g_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

const char *test_shared(char *buf, size_t cap, const char *what, const char *rel) {
    snprintf(buf, cap, "%s/%s", LD_SHARED, rel);
    if (ld_file_exists(buf)) return buf;
    printf("SKIPPED: %s: needs the shared data, %s is missing\n", what, buf);
    return NULL;
}

char *test_read(const char *path) {
    char *s = ld_read_file(path, NULL);
    if (!s) {
        fprintf(stderr, "test: cannot read fixture: %s\n", ld_last_error());
        exit(2);
    }
    return s;
}
