// libFuzzer: parsing a judge model's reply (arbitrary text from a provider).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "judge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    JudgeScores js;
    char err[256];
    if (judge_parse(s, &js, err, sizeof err) == 0) {
        if (!(js.similarity >= 1 && js.similarity <= 100 && js.precision >= 1 && js.precision <= 100)) abort();
        judge_scores_free(&js);
    }
    free(s);
    return 0;
}
