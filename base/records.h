// defines: training/test records in the chat `messages` JSONL form (design.md §3), read with file:line
// errors, and the atomic writing of JSONL outputs (temp file + rename: a crash never leaves half a file).
#pragma once
#include <cjson/cJSON.h>

typedef struct {
    char *id;
    const char *instruction;  // the last user message before the answer
    const char *response;  // the final assistant message (the reference), or NULL
    cJSON *json;  // the whole record (owns the strings above)
} Record;

typedef struct {
    Record *v;
    int n;
} Records;

// Reads every non-blank line of a JSONL file as a JSON object: items[i] came from line lines[i]. -1 with
// "file:line: ..." on a line that is not a JSON object (or an empty file when allow_empty is 0).
int jsonl_read(const char *path, cJSON ***items, int **lines, int *n, int allow_empty);

// Reads a JSONL file of records; `require_response` demands a final assistant message. -1 with an error
// naming file:line on malformed lines, unknown roles, empty contents or an empty file.
int records_read(const char *path, int require_response, Records *out);
void records_free(Records *r);

// A whole JSON file (metrics.json, say), or NULL when it is missing or not JSON.
cJSON *json_read_file(const char *path);

// Writes items (cJSON objects, one per line) to path atomically.
int jsonl_write_atomic(const char *path, cJSON *const *items, int n);
