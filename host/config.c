#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util.h"

static cJSON *scalar(const yaml_event_t *e) {
    const char *v = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;
    if (e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (!strcmp(v, "true") || !strcmp(v, "True")) return cJSON_CreateTrue();
        if (!strcmp(v, "false") || !strcmp(v, "False")) return cJSON_CreateFalse();
        if (!n || !strcmp(v, "null") || !strcmp(v, "~")) return cJSON_CreateNull();
        char *end;
        double d = strtod(v, &end);
        if (end == v + n && n && isfinite(d)) return cJSON_CreateNumber(d);
    }
    return cJSON_CreateString(v);
}

// One node from the event stream (mapping, sequence or scalar). NULL on a parse error.
static cJSON *node(yaml_parser_t *p, yaml_event_t *first, const char *name) {
    if (first->type == YAML_SCALAR_EVENT) return scalar(first);
    if (first->type == YAML_ALIAS_EVENT) {
        ld_set_error("%s: line %zu: YAML aliases are not supported", name, first->start_mark.line + 1);
        return NULL;
    }
    int mapping = first->type == YAML_MAPPING_START_EVENT;
    if (!mapping && first->type != YAML_SEQUENCE_START_EVENT) {
        ld_set_error("%s: line %zu: unexpected YAML structure", name, first->start_mark.line + 1);
        return NULL;
    }
    cJSON *out = mapping ? cJSON_CreateObject() : cJSON_CreateArray();
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(p, &e)) {
            ld_set_error("%s: line %zu: %s", name, p->problem_mark.line + 1, p->problem ? p->problem : "YAML error");
            cJSON_Delete(out);
            return NULL;
        }
        if (e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&e);
            return out;
        }
        if (mapping) {
            if (e.type != YAML_SCALAR_EVENT) {
                ld_set_error("%s: line %zu: mapping keys must be plain strings", name, e.start_mark.line + 1);
                yaml_event_delete(&e);
                cJSON_Delete(out);
                return NULL;
            }
            char *key = ld_xstrdup((const char *)e.data.scalar.value);
            size_t line = e.start_mark.line + 1;
            yaml_event_delete(&e);
            if (!yaml_parser_parse(p, &e)) {
                ld_set_error("%s: line %zu: %s", name, p->problem_mark.line + 1, p->problem ? p->problem : "YAML error");
                free(key);
                cJSON_Delete(out);
                return NULL;
            }
            cJSON *v = node(p, &e, name);
            yaml_event_delete(&e);
            if (!v || cJSON_GetObjectItemCaseSensitive(out, key)) {
                if (v) ld_set_error("%s: line %zu: key '%s' appears twice", name, line, key);
                cJSON_Delete(v);
                free(key);
                cJSON_Delete(out);
                return NULL;
            }
            cJSON_AddItemToObject(out, key, v);
            free(key);
        } else {
            cJSON *v = node(p, &e, name);
            yaml_event_delete(&e);
            if (!v) {
                cJSON_Delete(out);
                return NULL;
            }
            cJSON_AddItemToArray(out, v);
        }
    }
}

cJSON *yaml_to_json(const char *text, size_t len, const char *name) {
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    cJSON *root = NULL;
    int failed = 0;
    yaml_event_t e;
    for (;;) {
        if (!yaml_parser_parse(&p, &e)) {
            ld_set_error("%s: line %zu: %s", name, p.problem_mark.line + 1, p.problem ? p.problem : "YAML error");
            cJSON_Delete(root);
            root = NULL;
            failed = 1;
            break;
        }
        int type = e.type;
        if (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT || type == YAML_SCALAR_EVENT) {
            cJSON *n = root ? NULL : node(&p, &e, name);
            if (!n) {
                if (root) ld_set_error("%s: more than one YAML document", name);
                yaml_event_delete(&e);
                cJSON_Delete(root);
                root = NULL;
                failed = 1;
                break;
            }
            root = n;
        }
        yaml_event_delete(&e);
        if (type == YAML_STREAM_END_EVENT) break;
    }
    yaml_parser_delete(&p);
    if (!root && !failed) ld_set_error("%s: empty config", name);
    if (root && !cJSON_IsObject(root)) {
        ld_set_error("%s: the top level must be a mapping of sections", name);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *config_load(const char *path) {
    size_t n;
    char *t = ld_read_file(path, &n);
    if (!t) return NULL;
    cJSON *j = yaml_to_json(t, n, path);
    free(t);
    return j;
}

int cfg_check_keys(const cJSON *obj, const char *path, const char *const *allowed, const char *file) {
    if (!obj) {
        ld_set_error("%s: missing '%s'", file, path);
        return -1;
    }
    if (!cJSON_IsObject(obj)) {
        ld_set_error("%s: '%s' must be a mapping", file, path);
        return -1;
    }
    for (const cJSON *c = obj->child; c; c = c->next) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(c->string, allowed[i]);
        if (!ok) {
            char list[512] = "";
            for (int i = 0; allowed[i]; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", allowed[i]);
            ld_set_error("%s: unknown key '%s%s%s' (known: %s)", file, path, path[0] ? "." : "", c->string, list);
            return -1;
        }
    }
    return 0;
}

static int cfg_get_str(const cJSON *obj, const char *key, const char *path, const char *def, const char **out, const char *file) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (!def) {
            ld_set_error("%s: missing '%s.%s'", file, path, key);
            return -1;
        }
        *out = def;
        return 0;
    }
    if (!cJSON_IsString(v)) {
        ld_set_error("%s: '%s.%s' must be a string", file, path, key);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

static int cfg_get_num(const cJSON *obj, const char *key, const char *path, double def, double lo, double hi, double *out, const char *file) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (isnan(def)) {
            ld_set_error("%s: missing '%s.%s'", file, path, key);
            return -1;
        }
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) {
        ld_set_error("%s: '%s.%s' must be a number", file, path, key);
        return -1;
    }
    if (!(v->valuedouble >= lo && v->valuedouble <= hi)) {
        ld_set_error("%s: '%s.%s' is %g, outside [%g, %g]", file, path, key, v->valuedouble, lo, hi);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

static int cfg_get_int(const cJSON *obj, const char *key, const char *path, int def, int lo, int hi, int *out, const char *file) {
    double d;
    if (cfg_get_num(obj, key, path, def, lo, hi, &d, file)) return -1;
    if (d != floor(d)) {
        ld_set_error("%s: '%s.%s' must be a whole number", file, path, key);
        return -1;
    }
    *out = (int)d;
    return 0;
}

// A string that must be one of `choices` (NULL-terminated; the first is the default): *out gets its index.
static int cfg_get_choice(const cJSON *obj, const char *key, const char *path, const char *const *choices, int *out, const char *file) {
    const char *v;
    if (cfg_get_str(obj, key, path, choices[0], &v, file)) return -1;
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (!strcmp(v, choices[i])) {
            *out = i;
            return 0;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? " or " : "", choices[i]);
    }
    ld_set_error("%s: '%s.%s' is '%s' (%s)", file, path, key, v, list);
    return -1;
}

int cfg_service(const cJSON *svc, const char *path, const char *file, ProviderConfig *p, ClientLimits *l) {
    static const char *const keys[] = {"provider",
                                       "base_url",
                                       "model",
                                       "api_key_env",
                                       "temperature",
                                       "max_tokens",
                                       "price_in_per_mtok",
                                       "price_out_per_mtok",
                                       "concurrency",
                                       "requests_per_minute",
                                       "tokens_per_minute",
                                       "max_attempts",
                                       "timeout_s",
                                       "budget_usd",
                                       "retry_after_max_s",
                                       "long_retry_after",
                                       "deadline_s",
                                       "max_reply_mb",
                                       "invalid_utf8",
                                       NULL};
    if (cfg_check_keys(svc, path, keys, file)) return -1;
    const char *wire;
    memset(p, 0, sizeof *p);
    *l = client_limits_default();
    if (cfg_get_str(svc, "provider", path, NULL, &wire, file)) return -1;
    if (wire_from_name(wire, &p->wire)) {
        ld_set_error("%s: '%s.provider' is '%s' (openai, anthropic or gemini)", file, path, wire);
        return -1;
    }
    static const char *const default_url[] = {"https://api.openai.com/v1", "https://api.anthropic.com",
                                              "https://generativelanguage.googleapis.com"};
    double budget, reply_mb;
    if (cfg_get_str(svc, "base_url", path, default_url[p->wire], &p->base_url, file) ||
        cfg_get_str(svc, "model", path, NULL, &p->model, file) || cfg_get_str(svc, "api_key_env", path, "", &p->api_key_env, file) ||
        cfg_get_num(svc, "temperature", path, 0.7, 0, 2, &p->temperature, file) ||
        cfg_get_int(svc, "max_tokens", path, 1024, 1, 1 << 20, &p->max_tokens, file) ||
        cfg_get_num(svc, "price_in_per_mtok", path, 0, 0, 1e6, &p->price_in_per_mtok, file) ||
        cfg_get_num(svc, "price_out_per_mtok", path, 0, 0, 1e6, &p->price_out_per_mtok, file) ||
        cfg_get_int(svc, "concurrency", path, 16, 1, 4096, &l->concurrency, file) ||
        cfg_get_int(svc, "requests_per_minute", path, 0, 0, 1 << 30, &l->rpm, file) ||
        cfg_get_int(svc, "tokens_per_minute", path, 0, 0, 1 << 30, &l->tpm, file) ||
        cfg_get_int(svc, "max_attempts", path, 6, 1, 100, &l->max_attempts, file) ||
        cfg_get_num(svc, "timeout_s", path, 120, 0.1, 3600, &l->timeout_s, file) ||
        cfg_get_num(svc, "budget_usd", path, 0, 0, 1e9, &budget, file) ||
        cfg_get_num(svc, "retry_after_max_s", path, l->retry_after_max_s, 0, 7 * 86400, &l->retry_after_max_s, file) ||
        cfg_get_choice(svc, "long_retry_after", path, (const char *const[]){"fail", "wait", NULL}, &l->retry_after_wait, file) ||
        cfg_get_num(svc, "deadline_s", path, 0, 0, 1e8, &l->deadline_s, file) ||
        cfg_get_num(svc, "max_reply_mb", path, 16, 0.001, 4096, &reply_mb, file) ||
        cfg_get_choice(svc, "invalid_utf8", path, (const char *const[]){"drop", "repair", NULL}, &l->repair_utf8, file))
        return -1;
    l->max_reply_bytes = (size_t)(reply_mb * 1048576);
    if (l->retry_after_wait && l->deadline_s <= 0) {  // a hostile Retry-After of 1e9 s would hang the run
        ld_set_error("%s: '%s.long_retry_after: wait' needs '%s.deadline_s', the longest a stage may wait", file, path, path);
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(svc, "budget_usd") && budget <= 0) {
        ld_set_error("%s: '%s.budget_usd' is 0: no request could ever be sent (leave it out for no cap)", file, path);
        return -1;
    }
    l->budget_usd = budget;
    return 0;
}
