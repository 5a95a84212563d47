#define _GNU_SOURCE
#include "checker_command.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

enum { MAX_OUTPUT = 64 << 20 };

static int temp_file(char *path, size_t cap, const char *what) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, cap, "%s/llamaduo-check-%s-XXXXXX", dir && *dir ? dir : "/tmp", what);
    int fd = mkstemp(path);
    if (fd < 0) ld_set_error("checker: cannot create a temporary file in %s: %s", dir && *dir ? dir : "/tmp", strerror(errno));
    return fd;
}

static int write_items(int fd, const CheckItem *items, int n) {
    FILE *f = fdopen(dup(fd), "w");
    if (!f) return -1;
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", items[i].id);
        cJSON_AddStringToObject(o, "prompt", items[i].prompt ? items[i].prompt : "");
        if (items[i].reference)
            cJSON_AddStringToObject(o, "reference", items[i].reference);
        else
            cJSON_AddNullToObject(o, "reference");
        cJSON_AddStringToObject(o, "answer", items[i].answer ? items[i].answer : "");
        char *t = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", t);
        free(t);
        cJSON_Delete(o);
    }
    return fclose(f) == 0 ? 0 : -1;
}

// The environment a checker gets: nothing that could hold a secret.
static char **clean_env(void) {
    static const char *keep[] = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", NULL};
    char **env = ld_xcalloc(8, sizeof(char *));
    int k = 0;
    for (int i = 0; keep[i]; i++) {
        const char *v = getenv(keep[i]);
        if (!v) continue;
        size_t n = strlen(keep[i]) + strlen(v) + 2;
        env[k] = ld_xmalloc(n);
        snprintf(env[k++], n, "%s=%s", keep[i], v);
    }
    return env;
}

// Last non-empty line of a file, for the error message (at most cap-1 bytes; only the file's last 64 KiB are read).
static void last_line(const char *path, char *out, size_t cap) {
    out[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f), from = size > 65536 ? size - 65536 : 0;
    fseek(f, from, SEEK_SET);
    char *t = ld_xmalloc((size_t)(size - from) + 1);
    size_t len = fread(t, 1, (size_t)(size - from), f);
    t[len] = 0;
    fclose(f);
    while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' ')) t[--len] = 0;
    char *nl = strrchr(t, '\n');
    snprintf(out, cap, "%s", nl ? nl + 1 : t);
    free(t);
}

// Runs the command with stdin/stdout/stderr on the files; 0 when it exited 0 within the limit.
static int run_limited(const CheckerCommand *c, int in_fd, int out_fd, int err_fd, const char *err_path) {
    char **env = clean_env();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);  // its own group: a timeout stops its children too
        lseek(in_fd, 0, SEEK_SET);
        dup2(in_fd, 0), dup2(out_fd, 1), dup2(err_fd, 2);
        execle("/bin/sh", "sh", "-c", c->command, (char *)NULL, env);
        _exit(127);
    }
    for (int i = 0; env[i]; i++) free(env[i]);
    free(env);
    if (pid < 0) {
        ld_set_error("task.check.command '%s': cannot start: %s", c->command, strerror(errno));
        return -1;
    }
    setpgid(pid, pid);
    double deadline = ld_time_s() + c->timeout_s;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            ld_set_error("task.check.command '%s': waitpid: %s", c->command, strerror(errno));
            return -1;
        }
        if (ld_time_s() > deadline) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            ld_set_error("task.check.command '%s' ran past its %g s limit (task.check.timeout_s) and was stopped", c->command,
                         c->timeout_s);
            return -1;
        }
        nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    }
    kill(-pid, SIGKILL);  // anything it left running in the background
    char tail[300];
    last_line(err_path, tail, sizeof tail);
    // the shell reports a command a signal killed as 128 + the signal
    int sig = WIFSIGNALED(status)                                      ? WTERMSIG(status)
              : WEXITSTATUS(status) > 128 && WEXITSTATUS(status) < 160 ? WEXITSTATUS(status) - 128
                                                                       : 0;
    if (sig) {
        ld_set_error("task.check.command '%s' was killed by signal %d (%s)%s%s", c->command, sig, strsignal(sig), tail[0] ? ": " : "",
                     tail);
        return -1;
    }
    if (WEXITSTATUS(status)) {
        ld_set_error("task.check.command '%s' exited with status %d%s%s", c->command, WEXITSTATUS(status), tail[0] ? ": " : "", tail);
        return -1;
    }
    return 0;
}

// Items by id: an index sorted by id, searched by bisection (a synthesis round checks thousands of pairs).
typedef struct {
    const CheckItem *items;
    int *order, n;
} IdIndex;

static const CheckItem *g_sort_items;  // qsort has no context argument in C11
static int cmp_by_id(const void *a, const void *b) { return strcmp(g_sort_items[*(const int *)a].id, g_sort_items[*(const int *)b].id); }

static IdIndex id_index(const CheckItem *items, int n) {
    IdIndex x = {items, ld_xmalloc(sizeof(int) * (size_t)(n + 1)), n};
    for (int i = 0; i < n; i++) x.order[i] = i;
    g_sort_items = items;
    qsort(x.order, (size_t)n, sizeof(int), cmp_by_id);
    return x;
}

static int find_id(const IdIndex *x, const char *id) {
    int lo = 0, hi = x->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(x->items[x->order[mid]].id, id);
        if (!c) return x->order[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static int parse_output(const CheckerCommand *c, char *text, const IdIndex *ix, double *scores, char **reasons) {
    const CheckItem *items = ix->items;
    int n = ix->n;
    for (int i = 0; i < n; i++) scores[i] = NAN;
    int rc = 0, line = 0;
    for (char *p = text, *nl; rc == 0 && p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        if (strspn(p, " \t\r") == strlen(p)) continue;
        cJSON *o = cJSON_ParseWithOpts(p, NULL, 1);  // the whole line: trailing garbage is garbage
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id"), *sc = cJSON_GetObjectItemCaseSensitive(o, "score"),
                    *why = cJSON_GetObjectItemCaseSensitive(o, "reason");
        int k = cJSON_IsString(id) ? find_id(ix, id->valuestring) : -1;
        double v = cJSON_IsNumber(sc) ? sc->valuedouble : cJSON_IsTrue(sc) ? 1 : cJSON_IsFalse(sc) ? 0 : NAN;
        if (!cJSON_IsObject(o) || !cJSON_IsString(id) || isnan(v)) {
            ld_set_error("task.check.command '%s': output line %d is not {\"id\": ..., \"score\": 0..1}: %.80s", c->command, line, p);
            rc = -1;
        } else if (k < 0) {
            ld_set_error("task.check.command '%s': output line %d names id '%s', which it was not given", c->command, line,
                         id->valuestring);
            rc = -1;
        } else if (v < 0 || v > 1) {
            ld_set_error("task.check.command '%s': output line %d scores '%s' %g, outside 0..1", c->command, line, id->valuestring, v);
            rc = -1;
        } else {
            scores[k] = v;
            if (cJSON_IsString(why) && reasons) free(reasons[k]), reasons[k] = ld_xstrdup(why->valuestring);
        }
        cJSON_Delete(o);
    }
    for (int i = 0; rc == 0 && i < n; i++)
        if (isnan(scores[i])) {
            ld_set_error("task.check.command '%s' gave no score for id '%s' (%d item(s) sent)", c->command, items[i].id, n);
            rc = -1;
        }
    return rc;
}

static int unique_ids(const IdIndex *ix) {
    for (int i = 1; i < ix->n; i++)
        if (!strcmp(ix->items[ix->order[i - 1]].id, ix->items[ix->order[i]].id)) {
            ld_set_error("checker: id '%s' is given twice", ix->items[ix->order[i]].id);
            return 0;
        }
    return 1;
}

int checker_parse_output(const CheckerCommand *c, const char *text, const CheckItem *items, int n, double *scores, char **reasons) {
    IdIndex ix = id_index(items, n);
    char *copy = ld_xstrdup(text);
    int rc = unique_ids(&ix) ? parse_output(c, copy, &ix, scores, reasons) : -1;
    free(copy), free(ix.order);
    return rc;
}

// What the checker wrote, size-checked before it is read, parsed into fresh arrays (freed again on an error).
static int read_scores(const CheckerCommand *c, int out_fd, const char *out_path, const IdIndex *ix, double **scores, char ***reasons) {
    struct stat st;
    if (fstat(out_fd, &st) == 0 && st.st_size > MAX_OUTPUT) {
        ld_set_error("task.check.command '%s' wrote more than %d MiB", c->command, MAX_OUTPUT >> 20);
        return -1;
    }
    size_t len = 0;
    char *text = ld_read_file(out_path, &len);
    if (!text) return -1;
    int rc = -1;
    if (strlen(text) != len) {
        ld_set_error("task.check.command '%s' wrote a NUL byte: its output is not JSONL", c->command);
    } else {
        *scores = ld_xcalloc((size_t)ix->n + 1, sizeof(double));
        if (reasons) *reasons = ld_xcalloc((size_t)ix->n + 1, sizeof(char *));
        rc = parse_output(c, text, ix, *scores, reasons ? *reasons : NULL);
        if (rc) {
            free(*scores), *scores = NULL;
            if (reasons) checker_reasons_free(*reasons, ix->n), *reasons = NULL;
        }
    }
    free(text);
    return rc;
}

int checker_command_run(const CheckerCommand *c, const CheckItem *items, int n, double **scores, char ***reasons) {
    *scores = NULL;
    if (reasons) *reasons = NULL;
    IdIndex ix = id_index(items, n);
    if (!unique_ids(&ix)) {
        free(ix.order);
        return -1;
    }
    char in_path[512], out_path[512], err_path[512];
    int in_fd = temp_file(in_path, sizeof in_path, "in"), out_fd = in_fd < 0 ? -1 : temp_file(out_path, sizeof out_path, "out");
    int err_fd = out_fd < 0 ? -1 : temp_file(err_path, sizeof err_path, "err"), rc = -1;
    if (err_fd >= 0 && write_items(in_fd, items, n) == 0 && run_limited(c, in_fd, out_fd, err_fd, err_path) == 0) {
        rc = read_scores(c, out_fd, out_path, &ix, scores, reasons);
    }
    if (in_fd >= 0) close(in_fd), unlink(in_path);
    if (out_fd >= 0) close(out_fd), unlink(out_path);
    if (err_fd >= 0) close(err_fd), unlink(err_path);
    free(ix.order);
    return rc;
}

void checker_reasons_free(char **reasons, int n) {
    if (!reasons) return;
    for (int i = 0; i < n; i++) free(reasons[i]);
    free(reasons);
}
