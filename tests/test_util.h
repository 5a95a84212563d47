// defines: the tiny assertion helpers the test programs share.
#pragma once
#include <stdio.h>
#include <stdlib.h>

extern int g_failures;
#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            g_failures++;                                                            \
        }                                                                            \
    } while (0)
int test_finish(const char *name);  // prints a summary, returns the exit code
char *test_read(const char *path);  // whole file or exits with a message
// The path of a file under the shared data beside the checkout (../shared, or $LLAMADUO_SHARED at configure
// time), written into buf; NULL after printing a SKIPPED line naming the missing path (a fresh clone without
// ../shared still runs every other check).
const char *test_shared(char *buf, size_t cap, const char *what, const char *rel);
