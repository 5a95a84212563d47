// libFuzzer: a user checker's output (task.check.command's {id, score, reason} lines) read back against a batch.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checker_command.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    const CheckItem items[] = {{"a#0", "p", "r", "x"}, {"b#0", "q", NULL, "y"}, {"c#1", "s", "t", "z"}};
    CheckerCommand c = {"fuzz", 1};
    double scores[3];
    char *reasons[3] = {0};
    checker_parse_output(&c, text, items, 3, scores, reasons);
    for (int i = 0; i < 3; i++) free(reasons[i]);
    free(text);
    return 0;
}
