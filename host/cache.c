#include "cache.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "util.h"

struct LlmCache {
    sqlite3 *db;
    sqlite3_stmt *get, *put, *put_unusable, *batch_get, *batch_put, *member_put, *member_of, *members;
};

LlmCache *cache_open(const char *path) {
    LlmCache *c = ld_xcalloc(1, sizeof *c);
    if (sqlite3_open(path, &c->db) != SQLITE_OK) {
        ld_set_error("%s: cannot open the response cache: %s", path, sqlite3_errmsg(c->db));
        cache_close(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, 5000);
    const char *schema =
        // FULL: a paid reply, or a batch marked sent, must outlive a power cut too, or the rerun pays for it again
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
        "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, wire TEXT, model TEXT, request TEXT,"
        " text TEXT, finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cost REAL,"
        " created TEXT DEFAULT (datetime('now')));"
        "CREATE TABLE IF NOT EXISTS unusable (key TEXT, cost REAL, reason TEXT, created TEXT DEFAULT (datetime('now')));"
        "CREATE TABLE IF NOT EXISTS batches (batch_key TEXT PRIMARY KEY, batch_id TEXT, state TEXT,"
        " updated TEXT DEFAULT (datetime('now')));"
        "CREATE TABLE IF NOT EXISTS batch_members (request_key TEXT, batch_key TEXT, PRIMARY KEY (request_key, batch_key))";
    char *err = NULL;
    if (sqlite3_exec(c->db, schema, NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db,
                           "SELECT text, finish_reason, prompt_tokens, completion_tokens, created, cost FROM responses WHERE key = ?", -1,
                           &c->get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db,
                           "INSERT OR REPLACE INTO responses (key, wire, model, request, text, finish_reason, "
                           "prompt_tokens, completion_tokens, cost, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &c->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "INSERT INTO unusable (key, cost, reason) VALUES (?, ?, ?)", -1, &c->put_unusable, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "SELECT batch_id, state FROM batches WHERE batch_key = ?", -1, &c->batch_get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO batches (batch_key, batch_id, state, updated) VALUES (?, ?, ?, datetime('now'))",
                           -1, &c->batch_put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "INSERT OR IGNORE INTO batch_members (request_key, batch_key) VALUES (?, ?)", -1, &c->member_put, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(c->db,
                           "SELECT m.batch_key FROM batch_members m JOIN batches b ON b.batch_key = m.batch_key"
                           " WHERE m.request_key = ? AND b.state != 'ended' ORDER BY m.rowid DESC LIMIT 1",
                           -1, &c->member_of, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "SELECT request_key FROM batch_members WHERE batch_key = ? ORDER BY rowid", -1, &c->members, NULL) !=
            SQLITE_OK) {
        ld_set_error("%s: response cache: %s", path, err ? err : sqlite3_errmsg(c->db));
        sqlite3_free(err);
        cache_close(c);
        return NULL;
    }
    return c;
}

void cache_close(LlmCache *c) {
    if (!c) return;
    sqlite3_finalize(c->get);
    sqlite3_finalize(c->put);
    sqlite3_finalize(c->put_unusable);
    sqlite3_finalize(c->batch_get);
    sqlite3_finalize(c->batch_put);
    sqlite3_finalize(c->member_put);
    sqlite3_finalize(c->member_of);
    sqlite3_finalize(c->members);
    sqlite3_close(c->db);
    free(c);
}

char *cache_key(const ProviderConfig *p, const HttpRequest *h) {
    const char *parts[] = {wire_name(p->wire), h->url, p->model, h->body};
    return text_sha256_hex(parts, 4);
}

int cache_get(LlmCache *c, const char *key, LlmReply *out, double *cost) {
    sqlite3_reset(c->get);
    sqlite3_bind_text(c->get, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(c->get) != SQLITE_ROW) return 0;
    memset(out, 0, sizeof *out);
    out->text = ld_xstrdup((const char *)sqlite3_column_text(c->get, 0));
    out->finish_reason = ld_xstrdup((const char *)sqlite3_column_text(c->get, 1));
    // rows are clamped as replies are checked (a cache written by an older build may hold a server's claims)
    long long pt = sqlite3_column_int64(c->get, 2), ct = sqlite3_column_int64(c->get, 3);
    out->prompt_tokens = (long)(pt < 0 ? 0 : pt > LD_USAGE_MAX ? LD_USAGE_MAX : pt);
    out->completion_tokens = (long)(ct < 0 ? 0 : ct > LD_USAGE_MAX ? LD_USAGE_MAX : ct);
    const unsigned char *t = sqlite3_column_text(c->get, 4);
    out->received_at = ld_xstrdup(t ? (const char *)t : "");
    double usd = sqlite3_column_double(c->get, 5);
    *cost = isfinite(usd) && usd > 0 ? usd : 0;
    return 1;
}

int cache_put(LlmCache *c, const char *key, const ProviderConfig *p, const char *request_body, const LlmReply *r, double cost) {
    sqlite3_reset(c->put);
    sqlite3_bind_text(c->put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(c->put, 2, wire_name(p->wire), -1, SQLITE_STATIC);
    sqlite3_bind_text(c->put, 3, p->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(c->put, 4, request_body, -1, SQLITE_STATIC);
    sqlite3_bind_text(c->put, 5, r->text, -1, SQLITE_STATIC);
    sqlite3_bind_text(c->put, 6, r->finish_reason ? r->finish_reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(c->put, 7, r->prompt_tokens);
    sqlite3_bind_int64(c->put, 8, r->completion_tokens);
    sqlite3_bind_double(c->put, 9, cost);
    sqlite3_bind_text(c->put, 10, r->received_at ? r->received_at : "", -1, SQLITE_STATIC);
    if (sqlite3_step(c->put) != SQLITE_DONE) {
        ld_set_error("response cache write failed: %s", sqlite3_errmsg(c->db));
        return -1;
    }
    return 0;
}

int cache_put_unusable(LlmCache *c, const char *key, double cost, const char *reason) {
    sqlite3_reset(c->put_unusable);
    sqlite3_bind_text(c->put_unusable, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_double(c->put_unusable, 2, cost);
    sqlite3_bind_text(c->put_unusable, 3, reason, -1, SQLITE_STATIC);
    if (sqlite3_step(c->put_unusable) != SQLITE_DONE) {
        ld_set_error("response cache write failed: %s", sqlite3_errmsg(c->db));
        return -1;
    }
    return 0;
}

double cache_total_cost(LlmCache *c) {
    sqlite3_stmt *st;
    double usd = 0;
    if (sqlite3_prepare_v2(c->db, "SELECT (SELECT COALESCE(SUM(cost), 0) FROM responses) + (SELECT COALESCE(SUM(cost), 0) FROM unusable)",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW) usd = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return usd;
}

char *cache_batch_get(LlmCache *c, const char *batch_key, char **state) {
    char *id = NULL;
    *state = NULL;
    sqlite3_reset(c->batch_get);
    sqlite3_bind_text(c->batch_get, 1, batch_key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(c->batch_get) == SQLITE_ROW) {
        const char *i = (const char *)sqlite3_column_text(c->batch_get, 0), *s = (const char *)sqlite3_column_text(c->batch_get, 1);
        id = ld_xstrdup(i ? i : "");
        *state = ld_xstrdup(s ? s : "");
    }
    sqlite3_reset(c->batch_get);
    return id;
}

int cache_batch_put(LlmCache *c, const char *batch_key, const char *batch_id, const char *state) {
    sqlite3_reset(c->batch_put);
    sqlite3_bind_text(c->batch_put, 1, batch_key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(c->batch_put, 2, batch_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(c->batch_put, 3, state, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(c->batch_put) == SQLITE_DONE ? 0 : -1;
    if (rc) ld_set_error("response cache: cannot record batch %s: %s", batch_id, sqlite3_errmsg(c->db));
    sqlite3_reset(c->batch_put);
    return rc;
}

int cache_batch_add_members(LlmCache *c, const char *batch_key, char *const *request_keys, int n) {
    int rc = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    for (int i = 0; i < n && !rc; i++) {
        sqlite3_reset(c->member_put);
        sqlite3_bind_text(c->member_put, 1, request_keys[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(c->member_put, 2, batch_key, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(c->member_put) == SQLITE_DONE ? 0 : -1;
    }
    sqlite3_reset(c->member_put);
    if (sqlite3_exec(c->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = -1;
    if (rc) ld_set_error("response cache: cannot record a batch's requests: %s", sqlite3_errmsg(c->db));
    return rc;
}

int cache_batch_known(LlmCache *c, const char *batch_id) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(c->db, "SELECT 1 FROM batches WHERE batch_id = ?", -1, &q, NULL) != SQLITE_OK) return 0;
    sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_TRANSIENT);
    int known = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return known;
}

char *cache_batch_of(LlmCache *c, const char *request_key) {
    char *k = NULL;
    sqlite3_reset(c->member_of);
    sqlite3_bind_text(c->member_of, 1, request_key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(c->member_of) == SQLITE_ROW) k = ld_xstrdup((const char *)sqlite3_column_text(c->member_of, 0));
    sqlite3_reset(c->member_of);
    return k;
}

char **cache_batch_members(LlmCache *c, const char *batch_key, int *n) {
    char **keys = NULL;
    *n = 0;
    sqlite3_reset(c->members);
    sqlite3_bind_text(c->members, 1, batch_key, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(c->members) == SQLITE_ROW) {
        keys = ld_xrealloc(keys, sizeof(char *) * (size_t)(*n + 1));
        keys[(*n)++] = ld_xstrdup((const char *)sqlite3_column_text(c->members, 0));
    }
    sqlite3_reset(c->members);
    return keys;
}
