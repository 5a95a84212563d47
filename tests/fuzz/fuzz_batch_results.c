// libFuzzer: a batch's output and error files (OpenAI Batch API JSONL) as the batch runner reads them.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

static void count(void *ctx, BatchResult *r) { *(int *)ctx += r->ok; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    ProviderConfig p = {.wire = WIRE_OPENAI, .model = "m", .price_in_per_mtok = 1, .price_out_per_mtok = 2};
    int ok = 0;
    batch_results_parse(&p, size % 2, text, "batch-fuzz", count, &ok);
    free(text);
    return 0;
}
