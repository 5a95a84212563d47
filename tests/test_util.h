// defines: the tiny assertion helpers the test programs share.
#pragma once
#include <stdio.h>
#include <stdlib.h>

extern int g_failures;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            g_failures++;                                                       \
        }                                                                       \
    } while (0)
int test_finish(const char *name);  // prints a summary, returns the exit code
char *test_read(const char *path);  // whole file or exits with a message
