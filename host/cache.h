// defines: the persistent service-LLM response cache (SQLite): a request whose hash of provider, base URL,
// model and full body is in the cache is never paid for twice — not on a rerun, not after a crash.
#pragma once
#include "provider.h"

typedef struct LlmCache LlmCache;

LlmCache *cache_open(const char *path);  // NULL with ld_last_error()
void cache_close(LlmCache *c);
// Hex SHA-256 of what identifies a request (heap). The key never enters it: it is not in the body or URL.
char *cache_key(const ProviderConfig *p, const HttpRequest *h);
// 1 on a hit; *cost gets what the reply cost when it was paid for.
int cache_get(LlmCache *c, const char *key, LlmReply *out, double *cost);
// What every stored reply cost when it was paid for, unusable ones included: each distinct usable request is
// paid once, so this is what a run directory has spent, crashes and reruns included.
double cache_total_cost(LlmCache *c);
// Stores one reply; committed before returning (durable across a kill -9).
int cache_put(LlmCache *c, const char *key, const ProviderConfig *p, const char *request_body, const LlmReply *r, double cost);
// Records what a reply that could not be used (not JSON, no text, too large, invalid UTF-8) cost.
int cache_put_unusable(LlmCache *c, const char *key, double cost, const char *reason);
// The batches a stage submitted (host/batch.c), by the hash of their requests: recorded before the first poll, so a
// run killed while waiting attaches to them when rerun. The id (heap, "" while submitting) and *state (heap), or NULL.
char *cache_batch_get(LlmCache *c, const char *batch_key, char **state);
int cache_batch_put(LlmCache *c, const char *batch_key, const char *batch_id, const char *state);
int cache_batch_known(LlmCache *c, const char *batch_id);  // 1 when a batch of this run has this provider id
// Which requests (by cache key) a batch holds, recorded before it is sent: a rerun finds every batch not yet read
// that holds one of its open requests, whatever the attempt or the split, and reads it instead of sending them again.
int cache_batch_add_members(LlmCache *c, const char *batch_key, char *const *request_keys, int n);
// The batch (its batch_key, heap) not yet ended that holds this request, or NULL.
char *cache_batch_of(LlmCache *c, const char *request_key);
// A batch's request keys in the order they were sent (heap array of heap strings; *n of them).
char **cache_batch_members(LlmCache *c, const char *batch_key, int *n);
