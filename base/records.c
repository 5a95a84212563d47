#include "records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int jsonl_read(const char *path, cJSON ***items, int **lines, int *n, int allow_empty) {
    *items = NULL;
    *lines = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        ld_set_error("%s: cannot open", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(j)) {
            ld_set_error("%s:%d: not a JSON object", path, lineno);
            cJSON_Delete(j);
            rc = -1;
            break;
        }
        *items = ld_xrealloc(*items, sizeof(cJSON *) * (size_t)(*n + 1));
        *lines = ld_xrealloc(*lines, sizeof(int) * (size_t)(*n + 1));
        (*items)[*n] = j;
        (*lines)[(*n)++] = lineno;
    }
    free(line);
    fclose(f);
    if (!rc && !*n && !allow_empty) {
        ld_set_error("%s: no records", path);
        rc = -1;
    }
    if (rc) {
        for (int i = 0; i < *n; i++) cJSON_Delete((*items)[i]);
        free(*items), free(*lines);
        *items = NULL, *lines = NULL, *n = 0;
    }
    return rc;
}

int records_read(const char *path, int require_response, Records *out) {
    memset(out, 0, sizeof *out);
    cJSON **items;
    int *lines, n;
    if (jsonl_read(path, &items, &lines, &n, 0)) return -1;
    int rc = 0, i = 0;
    out->v = ld_xcalloc((size_t)n, sizeof(Record));
    for (; i < n && !rc; i++) {
        cJSON *j = items[i];
        int lineno = lines[i];
        cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
        if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs)) {
            ld_set_error("%s:%d: not a record ({\"messages\": [...]} expected)", path, lineno);
            rc = -1;
            break;
        }
        Record r = {0};
        r.json = j;
        int k = 0;
        for (cJSON *m = msgs->child; m && !rc; m = m->next, k++) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *c = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (!cJSON_IsString(role) ||
                (strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant") && strcmp(role->valuestring, "system"))) {
                ld_set_error("%s:%d: message %d: unknown role%s%s", path, lineno, k + 1, cJSON_IsString(role) ? " " : "",
                             cJSON_IsString(role) ? role->valuestring : "");
                rc = -1;
            } else if (!cJSON_IsString(c) || !c->valuestring[0]) {
                ld_set_error("%s:%d: message %d: empty content", path, lineno, k + 1);
                rc = -1;
            } else if (!strcmp(role->valuestring, "user")) {
                r.instruction = c->valuestring;
                r.response = NULL;
            } else if (!strcmp(role->valuestring, "assistant")) {
                r.response = c->valuestring;
            }
        }
        if (!rc && !r.instruction) {
            ld_set_error("%s:%d: no user message", path, lineno);
            rc = -1;
        }
        if (!rc && require_response && !r.response) {
            ld_set_error("%s:%d: no assistant message after the last user message", path, lineno);
            rc = -1;
        }
        if (rc) break;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        char buf[64];
        if (cJSON_IsString(id))
            r.id = ld_xstrdup(id->valuestring);
        else if (cJSON_IsNumber(id))
            snprintf(buf, sizeof buf, "%.17g", id->valuedouble), r.id = ld_xstrdup(buf);
        else
            snprintf(buf, sizeof buf, "line-%d", lineno), r.id = ld_xstrdup(buf);
        out->v[out->n++] = r;
        items[i] = NULL;  // the record owns it now
    }
    for (int k = 0; k < n; k++) cJSON_Delete(items[k]);
    free(items), free(lines);
    if (rc) records_free(out);
    return rc;
}

void records_free(Records *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->v[i].id);
        cJSON_Delete(r->v[i].json);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

int jsonl_write_atomic(const char *path, cJSON *const *items, int n) {
    char *tmp;
    FILE *f = ld_atomic_open(path, &tmp);
    if (!f) return -1;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        char *s = cJSON_PrintUnformatted(items[i]);
        ok = fprintf(f, "%s\n", s) > 0;
        free(s);
    }
    return ld_atomic_commit(f, tmp, path, ok);
}

cJSON *json_read_file(const char *path) {
    char *t = ld_read_file(path, NULL);
    cJSON *j = t ? cJSON_Parse(t) : NULL;
    free(t);
    return j;
}
