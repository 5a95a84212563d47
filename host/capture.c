#define _GNU_SOURCE
#include "capture.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "records.h"
#include "util.h"

struct CaptureDb {
    sqlite3 *db;
    sqlite3_stmt *put, *shadow;
    pthread_mutex_t mu;  // one connection for every request thread: a statement is used by one at a time
    // The WAL is copied into the database by a thread of its own, on its own connection: a checkpoint fsyncs,
    // and in the committing thread (SQLite's default) it would hold up every request behind the lock.
    sqlite3 *checkpoint_db;
    pthread_t checkpointer;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    int stop, has_checkpointer;
};

static const char *k_schema =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"  // WAL commits survive the process dying (not the power)
    "CREATE TABLE IF NOT EXISTS captures (id INTEGER PRIMARY KEY, at REAL, route TEXT, mode TEXT, answered_by TEXT,"
    " messages TEXT, answer TEXT, latency_s REAL, shadow_answer TEXT, shadow_error TEXT, shadow_latency_s REAL);"
    "CREATE INDEX IF NOT EXISTS captures_at ON captures (at)";

static sqlite3 *open_db(const char *path, int flags) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        ld_set_error("%s: cannot open the capture store: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void *checkpoint_main(void *arg) {
    CaptureDb *c = arg;
    pthread_mutex_lock(&c->stop_mu);
    while (!c->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &until);
        pthread_mutex_unlock(&c->stop_mu);
        sqlite3_wal_checkpoint_v2(c->checkpoint_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);  // writers go on meanwhile
        pthread_mutex_lock(&c->stop_mu);
    }
    pthread_mutex_unlock(&c->stop_mu);
    return NULL;
}

CaptureDb *capture_open(const char *path) {
    sqlite3 *db = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!db) return NULL;
    CaptureDb *c = ld_xcalloc(1, sizeof *c);
    c->db = db;
    pthread_mutex_init(&c->mu, NULL);
    char *err = NULL;
    if (sqlite3_exec(db, k_schema, NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO captures (at, route, mode, answered_by, messages, answer, latency_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &c->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE captures SET shadow_answer = ?, shadow_error = ?, shadow_latency_s = ? WHERE id = ?", -1, &c->shadow,
                           NULL) != SQLITE_OK) {
        ld_set_error("%s: capture store: %s", path, err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        capture_close(c);
        return NULL;
    }
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    if ((c->checkpoint_db = open_db(path, SQLITE_OPEN_READWRITE))) {  // (without it, SQLite checkpoints as it commits)
        sqlite3_exec(db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
        pthread_create(&c->checkpointer, NULL, checkpoint_main, c);
        c->has_checkpointer = 1;
    }
    return c;
}

void capture_close(CaptureDb *c) {
    if (!c) return;
    if (c->has_checkpointer) {
        pthread_mutex_lock(&c->stop_mu);
        c->stop = 1;
        pthread_cond_signal(&c->stop_cv);
        pthread_mutex_unlock(&c->stop_mu);
        pthread_join(c->checkpointer, NULL);
        sqlite3_wal_checkpoint_v2(c->checkpoint_db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(c->checkpoint_db);
        pthread_mutex_destroy(&c->stop_mu);
        pthread_cond_destroy(&c->stop_cv);
    }
    sqlite3_finalize(c->put), sqlite3_finalize(c->shadow);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static double now_epoch(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

long capture_put(CaptureDb *c, const CaptureRow *r) {
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = c->put;
    sqlite3_bind_double(s, 1, now_epoch());
    sqlite3_bind_text(s, 2, r->route, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, r->mode, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, r->answered_by, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, r->messages, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, r->answer, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(s, 7, r->latency_s);
    long id = sqlite3_step(s) == SQLITE_DONE ? (long)sqlite3_last_insert_rowid(c->db) : -1;
    if (id < 0) ld_set_error("capture store: %s", sqlite3_errmsg(c->db));
    sqlite3_reset(s);
    pthread_mutex_unlock(&c->mu);
    return id;
}

int capture_set_shadow(CaptureDb *c, long id, const char *answer, const char *error, double latency_s) {
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = c->shadow;
    if (answer)
        sqlite3_bind_text(s, 1, answer, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, 1);
    if (error)
        sqlite3_bind_text(s, 2, error, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, 2);
    sqlite3_bind_double(s, 3, latency_s);
    sqlite3_bind_int64(s, 4, id);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -1;
    if (rc) ld_set_error("capture store: %s", sqlite3_errmsg(c->db));
    sqlite3_reset(s);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

// ---- reading back -----------------------------------------------------------------------------------------

// Rows of the store at path since a time, one callback each; -1 with an error (a missing store is one).
typedef int (*RowFn)(void *ctx, long id, const char *route, const char *mode, const char *answered_by, const char *messages,
                     const char *answer, const char *shadow_answer);

static int each_row(const char *path, double since, const char *where, RowFn fn, void *ctx) {
    if (!ld_file_exists(path)) {
        ld_set_error("%s: no capture store there (the proxy's capture.db)", path);
        return -1;
    }
    sqlite3 *db = open_db(path, SQLITE_OPEN_READONLY);
    if (!db) return -1;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT id, route, mode, answered_by, messages, answer, shadow_answer FROM captures WHERE at >= ?%s%s ORDER BY id",
             where ? " AND " : "", where ? where : "");
    sqlite3_stmt *s = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        ld_set_error("%s: not a capture store: %s", path, sqlite3_errmsg(db));
        rc = -1;
    }
    if (!rc) sqlite3_bind_double(s, 1, since);
    while (!rc && sqlite3_step(s) == SQLITE_ROW) {
        const char *col[6];
        for (int i = 0; i < 6; i++) col[i] = (const char *)sqlite3_column_text(s, i + 1);
        rc = fn(ctx, (long)sqlite3_column_int64(s, 0), col[0] ? col[0] : "", col[1] ? col[1] : "", col[2] ? col[2] : "", col[3], col[4],
                col[5]);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

// The stored conversation with one more message, or NULL when the row's messages are not a list of messages.
static cJSON *conversation(const char *messages, const char *role, const char *content) {
    cJSON *m = messages ? cJSON_Parse(messages) : NULL;
    if (!cJSON_IsArray(m) || !cJSON_GetArraySize(m) || !content) {
        cJSON_Delete(m);
        return NULL;
    }
    if (role) {
        cJSON *last = cJSON_CreateObject();
        cJSON_AddStringToObject(last, "role", role);
        cJSON_AddStringToObject(last, "content", content);
        cJSON_AddItemToArray(m, last);
    }
    return m;
}

static cJSON *record(long id, cJSON *messages) {
    char name[32];
    snprintf(name, sizeof name, "capture-%ld", id);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", name);
    cJSON_AddItemToObject(r, "messages", messages);
    return r;
}

typedef struct {
    cJSON **items;
    int n, cap;
    char **seen;  // the conversations kept, sorted, for duplicates
    int n_seen;
    CaptureExport *st;
    cJSON **answers;  // shadow: the student's answers beside items
    int answers_cap;
} Export;

static void push(cJSON ***v, int n, int *cap, cJSON *x) {
    if (n >= *cap) *v = ld_xrealloc(*v, sizeof(cJSON *) * (size_t)(*cap = *cap ? *cap * 2 : 64));
    (*v)[n] = x;
}

static int seen_before(Export *e, const char *key) {  // binary search, then insert: duplicates are exact conversations
    int lo = 0, hi = e->n_seen;
    while (lo < hi) {
        int mid = (lo + hi) / 2, c = strcmp(e->seen[mid], key);
        if (!c) return 1;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    e->seen = ld_xrealloc(e->seen, sizeof(char *) * (size_t)(e->n_seen + 1));
    memmove(e->seen + lo + 1, e->seen + lo, sizeof(char *) * (size_t)(e->n_seen - lo));
    e->seen[lo] = ld_xstrdup(key), e->n_seen++;
    return 0;
}

static int coverage_row(void *ctx, long id, const char *route, const char *mode, const char *by, const char *messages, const char *answer,
                        const char *shadow) {
    (void)route, (void)mode, (void)by, (void)shadow;
    Export *e = ctx;
    e->st->rows++;
    cJSON *conv = conversation(messages, "assistant", answer);
    if (!conv) return 0;
    char *key = cJSON_PrintUnformatted(conv);
    int dup = seen_before(e, key);
    free(key);
    if (dup) {
        e->st->duplicates++;
        cJSON_Delete(conv);
        return 0;
    }
    push(&e->items, e->n, &e->cap, record(id, conv));
    e->n++, e->st->exported++;
    return 0;
}

static void export_free(Export *e) {
    for (int i = 0; i < e->n; i++) cJSON_Delete(e->items[i]), cJSON_Delete(e->answers ? e->answers[i] : NULL);
    for (int i = 0; i < e->n_seen; i++) free(e->seen[i]);
    free(e->items), free(e->answers), free(e->seen);
}

int capture_export_coverage(const char *path, double since, const char *out, CaptureExport *st) {
    memset(st, 0, sizeof *st);
    Export e = {.st = st};
    int rc = each_row(path, since, "answered_by = 'service' AND answer IS NOT NULL", coverage_row, &e);
    if (!rc) rc = jsonl_write_atomic(out, e.items, e.n);
    export_free(&e);
    return rc;
}

static int shadow_row(void *ctx, long id, const char *route, const char *mode, const char *by, const char *messages, const char *answer,
                      const char *shadow) {
    (void)route, (void)mode, (void)by;
    Export *e = ctx;
    e->st->rows++;
    cJSON *conv = conversation(messages, "assistant", answer);
    if (!conv) return 0;
    cJSON *r = record(id, conv), *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "id", cJSON_GetObjectItemCaseSensitive(r, "id")->valuestring);
    cJSON_AddNumberToObject(a, "sample", 0);
    cJSON_AddStringToObject(a, "text", shadow);
    push(&e->items, e->n, &e->cap, r);
    push(&e->answers, e->n, &e->answers_cap, a);
    e->n++;
    e->st->shadow_pairs++, e->st->exported++;
    return 0;
}

int capture_export_shadow(const char *path, double since, const char *dir, CaptureExport *st) {
    memset(st, 0, sizeof *st);
    Export e = {.st = st};
    int rc = each_row(path, since, "answer IS NOT NULL AND shadow_answer IS NOT NULL", shadow_row, &e);
    if (!rc) rc = ld_mkdir_p(dir);
    char *test = ld_path_join(dir, "test.jsonl"), *answers = ld_path_join(dir, "answers.jsonl");
    if (!rc) rc = jsonl_write_atomic(test, e.items, e.n) || jsonl_write_atomic(answers, e.answers, e.n) ? -1 : 0;
    free(test), free(answers);
    export_free(&e);
    return rc;
}

// ---- counts -----------------------------------------------------------------------------------------------

typedef struct {
    char key[192];
    long n;
} Count;

typedef struct {
    Count counts[64];
    int n_counts;
    long shadow, exact, normalized;
    double rouge, chrf;
} Stats;

static int stats_row(void *ctx, long id, const char *route, const char *mode, const char *by, const char *messages, const char *answer,
                     const char *shadow) {
    (void)id, (void)messages;
    Stats *s = ctx;
    char key[192];
    snprintf(key, sizeof key, "%s  %s  %s", route, mode, by);
    int i = 0;
    while (i < s->n_counts && strcmp(s->counts[i].key, key)) i++;
    if (i == s->n_counts && s->n_counts < 64) snprintf(s->counts[s->n_counts++].key, sizeof key, "%s", key);
    if (i < s->n_counts) s->counts[i].n++;
    if (answer && shadow) {
        s->shadow++;
        s->exact += metric_exact_match(shadow, answer), s->normalized += metric_normalized_exact_match(shadow, answer);
        s->rouge += metric_rouge_l(shadow, answer), s->chrf += metric_chrf(shadow, answer);
    }
    return 0;
}

int capture_stats(const char *path, double since, FILE *out) {
    Stats s = {0};
    if (each_row(path, since, NULL, stats_row, &s)) return -1;
    fprintf(out, "route  mode  answered by: requests captured\n");
    for (int i = 0; i < s.n_counts; i++) fprintf(out, "  %s: %ld\n", s.counts[i].key, s.counts[i].n);
    if (!s.n_counts) fprintf(out, "  (none)\n");
    if (s.shadow)
        fprintf(out, "shadow pairs: %ld; the student agrees with the service: exact match %.3f, normalized exact match %.3f, ROUGE-L %.3f, chrF %.3f\n",
                s.shadow, (double)s.exact / s.shadow, (double)s.normalized / s.shadow, s.rouge / s.shadow, s.chrf / s.shadow);
    else
        fprintf(out, "shadow pairs: 0\n");
    return 0;
}

int capture_parse_since(const char *text, double *epoch) {
    char *end;
    double v = strtod(text, &end);
    double unit = !strcmp(end, "m") ? 60 : !strcmp(end, "h") ? 3600 : !strcmp(end, "d") ? 86400 : 0;
    if (end != text && unit > 0 && v >= 0) {
        *epoch = now_epoch() - v * unit;
        return 0;
    }
    struct tm tm = {0};
    const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest) memset(&tm, 0, sizeof tm), rest = strptime(text, "%Y-%m-%d", &tm);
    if (rest && (!*rest || !strcmp(rest, "Z"))) {
        *epoch = (double)timegm(&tm);
        return 0;
    }
    ld_set_error("--since %s: give a date (2026-11-30), a UTC time (2026-11-30T12:00:00Z) or an age (90m, 24h, 7d)", text);
    return -1;
}
