// defines: a run's ledger (runs/<name>/ledger.sqlite): one row per (round, stage) with its status, times,
// inputs and outputs by content hash, service-LLM requests, tokens and dollars, and a detail JSON; plus run-wide
// facts (model ids, stop reason). A stage is skipped on resume only when it is recorded done and its outputs
// still have the recorded hashes. Every write is committed before returning (durable across a kill -9).
#pragma once

typedef struct Ledger Ledger;

typedef struct {
    int round;
    char stage[24];
    char status[12];  // running | done | failed | skipped
    char started[32], finished[32];
    double seconds;
    // The service's replies to the stage's last run: paid (sent, new) and reused from the response cache.
    long requests, cache_hits;  // requests sent / replies reused
    long prompt_tokens, completion_tokens;  // of every reply, reused ones included
    long new_prompt_tokens, new_completion_tokens;  // of the replies paid for
    double usd, new_usd, reused_usd;  // what the used replies cost / paid (unusable ones too) / reused
    char *inputs, *outputs, *detail;  // JSON text (heap)
} StageRow;

Ledger *ledger_open(const char *path);  // NULL with an error
void ledger_close(Ledger *l);
int ledger_begin(Ledger *l, int round, const char *stage, const char *inputs_json);
int ledger_finish(Ledger *l, const StageRow *r);  // status, seconds, usage, outputs, detail of (round, stage)
// 1 when (round, stage) is done and every output file listed still hashes to what was recorded.
int ledger_is_done(Ledger *l, int round, const char *stage);
int ledger_rows(Ledger *l, StageRow **rows, int *n);  // every stage, in round and start order
void ledger_rows_free(StageRow *rows, int n);
int ledger_set(Ledger *l, const char *key, const char *value);
char *ledger_get(Ledger *l, const char *key);  // heap, or NULL

// {"path": "sha256", ...} of the files named (missing ones omitted); heap JSON text.
char *files_hash_json(const char *const *paths, int n);
char *file_sha256(const char *path);  // hex (heap), NULL when unreadable
