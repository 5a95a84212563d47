#include "ledger.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

struct Ledger {
    sqlite3 *db;
    char *path;
};

static int fail(Ledger *l, const char *what) {
    ld_set_error("%s: %s: %s", l->path, what, sqlite3_errmsg(l->db));
    return -1;
}

// A ledger written before the paid / reused split gets its columns (zero: those runs did not record them).
static int add_columns(sqlite3 *db, char **err) {
    static const char *const cols[] = {"cache_hits", "new_prompt_tokens", "new_completion_tokens", "reused_usd"};
    static const char *const types[] = {"INTEGER", "INTEGER", "INTEGER", "REAL"};
    for (int i = 0; i < 4; i++) {
        sqlite3_stmt *st;
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT 1 FROM pragma_table_info('stages') WHERE name='%s'", cols[i]);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
        int present = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
        snprintf(sql, sizeof sql, "ALTER TABLE stages ADD COLUMN %s %s DEFAULT 0", cols[i], types[i]);
        if (!present && sqlite3_exec(db, sql, NULL, NULL, err) != SQLITE_OK) return -1;
    }
    return 0;
}

Ledger *ledger_open(const char *path) {
    Ledger *l = ld_xcalloc(1, sizeof *l);
    l->path = ld_xstrdup(path);
    const char *schema =
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
        "CREATE TABLE IF NOT EXISTS stages(round INTEGER NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL,"
        " started TEXT, finished TEXT, seconds REAL DEFAULT 0, inputs TEXT, outputs TEXT, requests INTEGER DEFAULT 0,"
        " prompt_tokens INTEGER DEFAULT 0, completion_tokens INTEGER DEFAULT 0, usd REAL DEFAULT 0, new_usd REAL DEFAULT 0,"
        " detail TEXT, seq INTEGER, cache_hits INTEGER DEFAULT 0, new_prompt_tokens INTEGER DEFAULT 0,"
        " new_completion_tokens INTEGER DEFAULT 0, reused_usd REAL DEFAULT 0, PRIMARY KEY(round, stage));"
        "CREATE TABLE IF NOT EXISTS run(key TEXT PRIMARY KEY, value TEXT);";
    char *err = NULL;
    if (sqlite3_open(path, &l->db) != SQLITE_OK || sqlite3_busy_timeout(l->db, 10000) != SQLITE_OK ||
        sqlite3_exec(l->db, schema, NULL, NULL, &err) != SQLITE_OK || add_columns(l->db, &err)) {
        ld_set_error("%s: cannot open the ledger: %s", path, err ? err : sqlite3_errmsg(l->db));
        sqlite3_free(err);
        ledger_close(l);
        return NULL;
    }
    return l;
}

void ledger_close(Ledger *l) {
    if (!l) return;
    sqlite3_close(l->db);
    free(l->path);
    free(l);
}

static void now_utc(char *buf, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int ledger_begin(Ledger *l, int round, const char *stage, const char *inputs_json) {
    char now[32];
    now_utc(now, sizeof now);
    sqlite3_stmt *st;
    const char *sql =
        "INSERT INTO stages(round, stage, status, started, inputs, seq) VALUES(?1, ?2, 'running', ?3, ?4,"
        " (SELECT COALESCE(MAX(seq), 0) + 1 FROM stages))"
        " ON CONFLICT(round, stage) DO UPDATE SET status='running', started=?3, inputs=?4, finished=NULL";
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) return fail(l, "begin");
    sqlite3_bind_int(st, 1, round);
    sqlite3_bind_text(st, 2, stage, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, inputs_json ? inputs_json : "{}", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : fail(l, "begin");
    sqlite3_finalize(st);
    return rc;
}

int ledger_finish(Ledger *l, const StageRow *r) {
    char now[32];
    now_utc(now, sizeof now);
    sqlite3_stmt *st;
    const char *sql =
        "UPDATE stages SET status=?3, finished=?4, seconds=seconds+?5, outputs=?6, requests=?7, prompt_tokens=?8,"
        " completion_tokens=?9, usd=?10, new_usd=?11, detail=?12, cache_hits=?13, new_prompt_tokens=?14,"
        " new_completion_tokens=?15, reused_usd=?16 WHERE round=?1 AND stage=?2";
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) return fail(l, "finish");
    sqlite3_bind_int(st, 1, r->round);
    sqlite3_bind_text(st, 2, r->stage, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 5, r->seconds);
    sqlite3_bind_text(st, 6, r->outputs ? r->outputs : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, r->requests);
    sqlite3_bind_int64(st, 8, r->prompt_tokens);
    sqlite3_bind_int64(st, 9, r->completion_tokens);
    sqlite3_bind_double(st, 10, r->usd);
    sqlite3_bind_double(st, 11, r->new_usd);
    sqlite3_bind_text(st, 12, r->detail ? r->detail : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 13, r->cache_hits);
    sqlite3_bind_int64(st, 14, r->new_prompt_tokens);
    sqlite3_bind_int64(st, 15, r->new_completion_tokens);
    sqlite3_bind_double(st, 16, r->reused_usd);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : fail(l, "finish");
    sqlite3_finalize(st);
    return rc;
}

char *file_sha256(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    unsigned char buf[1 << 16], md[32];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, n);
    unsigned len;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    char *hex = ld_xmalloc(65);
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    return hex;
}

char *files_hash_json(const char *const *paths, int n) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        char *h = file_sha256(paths[i]);
        if (h) cJSON_AddStringToObject(o, paths[i], h);
        free(h);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int ledger_is_done(Ledger *l, int round, const char *stage) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(l->db, "SELECT status, outputs FROM stages WHERE round=?1 AND stage=?2", -1, &st, NULL) != SQLITE_OK) return 0;
    sqlite3_bind_int(st, 1, round);
    sqlite3_bind_text(st, 2, stage, -1, SQLITE_STATIC);
    int done = 0;
    if (sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "done")) {
        const char *outs = (const char *)sqlite3_column_text(st, 1);
        cJSON *o = outs ? cJSON_Parse(outs) : NULL;
        done = 1;
        for (const cJSON *e = o ? o->child : NULL; e && done; e = e->next) {
            char *h = file_sha256(e->string);
            done = h && cJSON_IsString(e) && !strcmp(h, e->valuestring);
            free(h);
        }
        cJSON_Delete(o);
    }
    sqlite3_finalize(st);
    return done;
}

static char *col_dup(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return ld_xstrdup(t ? (const char *)t : "");
}

int ledger_rows(Ledger *l, StageRow **rows, int *n) {
    sqlite3_stmt *st;
    *rows = NULL, *n = 0;
    const char *sql =
        "SELECT round, stage, status, started, finished, seconds, requests, prompt_tokens, completion_tokens, usd,"
        " new_usd, inputs, outputs, detail, cache_hits, new_prompt_tokens, new_completion_tokens, reused_usd FROM stages"
        " ORDER BY round, seq";
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) return fail(l, "read");
    while (sqlite3_step(st) == SQLITE_ROW) {
        *rows = ld_xrealloc(*rows, sizeof(StageRow) * (size_t)(*n + 1));
        StageRow *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        r->round = sqlite3_column_int(st, 0);
        snprintf(r->stage, sizeof r->stage, "%s", sqlite3_column_text(st, 1));
        snprintf(r->status, sizeof r->status, "%s", sqlite3_column_text(st, 2));
        snprintf(r->started, sizeof r->started, "%s", sqlite3_column_text(st, 3) ? (const char *)sqlite3_column_text(st, 3) : "");
        snprintf(r->finished, sizeof r->finished, "%s", sqlite3_column_text(st, 4) ? (const char *)sqlite3_column_text(st, 4) : "");
        r->seconds = sqlite3_column_double(st, 5);
        r->requests = sqlite3_column_int64(st, 6);
        r->prompt_tokens = sqlite3_column_int64(st, 7);
        r->completion_tokens = sqlite3_column_int64(st, 8);
        r->usd = sqlite3_column_double(st, 9);
        r->new_usd = sqlite3_column_double(st, 10);
        r->inputs = col_dup(st, 11), r->outputs = col_dup(st, 12), r->detail = col_dup(st, 13);
        r->cache_hits = sqlite3_column_int64(st, 14);
        r->new_prompt_tokens = sqlite3_column_int64(st, 15), r->new_completion_tokens = sqlite3_column_int64(st, 16);
        r->reused_usd = sqlite3_column_double(st, 17);
    }
    sqlite3_finalize(st);
    return 0;
}

void ledger_rows_free(StageRow *rows, int n) {
    for (int i = 0; i < n; i++) free(rows[i].inputs), free(rows[i].outputs), free(rows[i].detail);
    free(rows);
}

int ledger_set(Ledger *l, const char *key, const char *value) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(l->db, "INSERT OR REPLACE INTO run(key, value) VALUES(?1, ?2)", -1, &st, NULL) != SQLITE_OK)
        return fail(l, "set");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : fail(l, "set");
    sqlite3_finalize(st);
    return rc;
}

char *ledger_get(Ledger *l, const char *key) {
    sqlite3_stmt *st;
    char *v = NULL;
    if (sqlite3_prepare_v2(l->db, "SELECT value FROM run WHERE key=?1", -1, &st, NULL) != SQLITE_OK) return NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) v = ld_xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}
