#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "options.h"
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

// One service section as given; cfg_service turns it into a ProviderConfig and its ClientLimits.
typedef struct {
    const char *provider, *base_url, *model, *api_key_env, *long_retry_after, *invalid_utf8, *batch_unanswered;
    double temperature, price_in, price_out, timeout_s, budget_usd, retry_after_max_s, deadline_s, max_reply_mb;
    double batch_poll_s, batch_deadline_h, batch_price_factor;
    int max_tokens, concurrency, rpm, tpm, max_attempts, batch, batch_max_requests;
} ServiceOptions;

#define V(field) offsetof(ServiceOptions, field)
static const OptionSpec k_service_options[] = {
    {"provider", OPT_CHOICE, V(provider), 0, 0, NULL, "openai|anthropic|gemini", "the wire format (openai: any Chat Completions endpoint)",
     NULL, 1},
    {"base_url", OPT_STR, V(base_url), 0, 0, NULL, NULL, "default per provider; vLLM, llama.cpp, Ollama, OpenRouter: their /v1 URL"},
    {"model", OPT_STR, V(model), 0, 0, NULL, NULL, "the service's model name", NULL, 1},
    {"api_key_env", OPT_STR, V(api_key_env), 0, 0, "", NULL, "the NAME of the variable holding the key (never the key)"},
    {"temperature", OPT_NUM, V(temperature), 0, 2, "0.7", NULL, "sampling temperature"},
    {"max_tokens", OPT_INT, V(max_tokens), 1, 1 << 20, "1024", NULL, "the reply's length at most"},
    {"price_in_per_mtok", OPT_NUM, V(price_in), 0, 1e6, "0", NULL, "dollars per million prompt tokens"},
    {"price_out_per_mtok", OPT_NUM, V(price_out), 0, 1e6, "0", NULL, "dollars per million completion tokens"},
    {"concurrency", OPT_INT, V(concurrency), 1, 4096, "16", NULL, "requests in flight"},
    {"requests_per_minute", OPT_INT, V(rpm), 0, 1 << 30, "0", NULL, "never exceeded in any 60 s window (0: no cap)"},
    {"tokens_per_minute", OPT_INT, V(tpm), 0, 1 << 30, "0", NULL, "estimated before sending (0: no cap)"},
    {"max_attempts", OPT_INT, V(max_attempts), 1, 100, "6", NULL, "attempts of one request (429, 5xx, timeouts, unusable replies)"},
    {"timeout_s", OPT_NUM, V(timeout_s), 0.1, 3600, "120", NULL, "one request's time at most"},
    {"budget_usd", OPT_NUM, V(budget_usd), 0, 1e9, "0", NULL, "no new request once this much is spent (leave out for no cap)"},
    {"retry_after_max_s", OPT_NUM, V(retry_after_max_s), 0, 7 * 86400, "120", NULL, "the longest Retry-After honoured"},
    {"long_retry_after", OPT_CHOICE, V(long_retry_after), 0, 0, "fail", "fail|wait", "a longer one fails the request, or is waited out"},
    {"deadline_s", OPT_NUM, V(deadline_s), 0, 1e8, "0", NULL, "the longest a stage may take (0: none)"},
    {"max_reply_mb", OPT_NUM, V(max_reply_mb), 0.001, 4096, "16", NULL, "a reply's size at most"},
    {"invalid_utf8", OPT_CHOICE, V(invalid_utf8), 0, 0, "drop", "drop|repair", "a reply with invalid UTF-8 is retried, or repaired"},
    {"batch", OPT_BOOL, V(batch), 0, 1, "0", NULL, "send through the provider's batch API: half the price, within 24 hours"},
    {"batch_poll_s", OPT_NUM, V(batch_poll_s), 0.01, 3600, "30", NULL, "how often a batch's state is asked"},
    {"batch_deadline_h", OPT_NUM, V(batch_deadline_h), 0.0001, 168, "25", NULL, "the longest a stage waits for its batches"},
    {"batch_price_factor", OPT_NUM, V(batch_price_factor), 0, 1, "0.5", NULL, "the batch price as a share of the listed one"},
    {"batch_max_requests", OPT_INT, V(batch_max_requests), 1, 50000, "50000", NULL, "requests per batch at most"},
    {"batch_unanswered", OPT_CHOICE, V(batch_unanswered), 0, 0, "resubmit", "resubmit|sync|fail",
     "requests an expired or partly failed batch left: in a new batch, one by one at the full price, or failed"},
    {NULL}};
#undef V

int cfg_service(const cJSON *svc, const char *path, const char *file, ProviderConfig *p, ClientLimits *l) {
    if (!svc) {
        ld_set_error("%s: missing '%s'", file, path);
        return -1;
    }
    ServiceOptions o;
    options_defaults(k_service_options, &o);
    if (options_from_json(k_service_options, &o, svc, path, file)) return -1;
    memset(p, 0, sizeof *p);
    *l = client_limits_default();
    wire_from_name(o.provider, &p->wire);  // one of the schema's choices
    static const char *const default_url[] = {"https://api.openai.com/v1", "https://api.anthropic.com",
                                              "https://generativelanguage.googleapis.com"};
    p->base_url = o.base_url ? o.base_url : default_url[p->wire];
    p->model = o.model, p->api_key_env = o.api_key_env, p->temperature = o.temperature, p->max_tokens = o.max_tokens;
    p->price_in_per_mtok = o.price_in, p->price_out_per_mtok = o.price_out;
    p->batch = o.batch, p->batch_poll_s = o.batch_poll_s, p->batch_deadline_s = o.batch_deadline_h * 3600;
    p->batch_price_factor = o.batch_price_factor, p->batch_max_requests = o.batch_max_requests;
    p->batch_unanswered = !strcmp(o.batch_unanswered, "resubmit") ? 1 : !strcmp(o.batch_unanswered, "sync") ? 2 : 0;
    l->concurrency = o.concurrency, l->rpm = o.rpm, l->tpm = o.tpm, l->max_attempts = o.max_attempts, l->timeout_s = o.timeout_s;
    l->retry_after_max_s = o.retry_after_max_s, l->retry_after_wait = !strcmp(o.long_retry_after, "wait"), l->deadline_s = o.deadline_s;
    l->max_reply_bytes = (size_t)(o.max_reply_mb * 1048576), l->repair_utf8 = !strcmp(o.invalid_utf8, "repair");
    if (l->retry_after_wait && l->deadline_s <= 0) {  // a hostile Retry-After of 1e9 s would hang the run
        ld_set_error("%s: '%s.long_retry_after: wait' needs '%s.deadline_s', the longest a stage may wait", file, path, path);
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(svc, "budget_usd") && o.budget_usd <= 0) {
        ld_set_error("%s: '%s.budget_usd' is 0: no request could ever be sent (leave it out for no cap)", file, path);
        return -1;
    }
    l->budget_usd = o.budget_usd;
    return 0;
}
