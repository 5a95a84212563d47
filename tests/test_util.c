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

char *test_read(const char *path) {
    char *s = ld_read_file(path, NULL);
    if (!s) {
        fprintf(stderr, "test: cannot read fixture: %s\n", ld_last_error());
        exit(2);
    }
    return s;
}
