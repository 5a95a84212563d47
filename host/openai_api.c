#include "openai_api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void api_error_set(ApiError *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...) {
    e->status = status, e->type = type, e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

// cJSON escapes control characters but passes other bytes through: what is not UTF-8 (a request's own bytes
// echoed in an error, a message cut mid-character at its buffer's end) is replaced so the body stays valid.
static char *print_json(cJSON *o) {
    char *raw = cJSON_PrintUnformatted(o), *s = ld_utf8_repair(raw, strlen(raw), NULL);
    free(raw);
    cJSON_Delete(o);
    return s;
}

char *api_error_json(const ApiError *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0])
        cJSON_AddStringToObject(err, "param", e->param);
    else
        cJSON_AddNullToObject(err, "param");
    if (e->code)
        cJSON_AddStringToObject(err, "code", e->code);
    else
        cJSON_AddNullToObject(err, "code");
    return print_json(root);
}

void api_request_free(ApiRequest *r) {
    for (int i = 0; i < r->n_messages; i++) free(r->messages[i].role), free(r->messages[i].content);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->messages), free(r->stop), free(r->model), free(r->prompt), free(r->json_schema);
    memset(r, 0, sizeof *r);
}

// A 400 for one parameter; returns -1.
__attribute__((format(printf, 3, 4))) static int bad(ApiError *err, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_error_set(err, 400, "invalid_request_error", param, NULL, "%s", msg);
    return -1;
}

// A number field within [lo, hi] (absent or null: keeps *out).
static int num_field(const cJSON *root, const char *name, double lo, double hi, double *out, ApiError *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return bad(err, name, "'%s' must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return bad(err, name, "'%s' must be between %g and %g, got %g", name, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return 0;
}

static int int_field(const cJSON *root, const char *name, int lo, int hi, int *out, ApiError *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) return bad(err, name, "'%s' must be an integer", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return bad(err, name, "'%s' must be between %d and %d, got %.0f", name, lo, hi, v->valuedouble);
    *out = (int)v->valuedouble;
    return 0;
}

static int bool_field(const cJSON *root, const char *name, int *out, ApiError *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return bad(err, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(v);
    return 0;
}

// Message content: a string, or an array of {"type": "text", "text": ...} parts joined.
static char *content_text(const cJSON *c) {
    if (cJSON_IsString(c)) return ld_xstrdup(c->valuestring);
    if (!cJSON_IsArray(c)) return NULL;
    size_t n = 0;
    for (const cJSON *p = c->child; p; p = p->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type"), *x = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(x)) return NULL;
        n += strlen(x->valuestring);
    }
    char *s = ld_xmalloc(n + 1);
    s[0] = 0;
    for (const cJSON *p = c->child; p; p = p->next) strcat(s, cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
    return s;
}

// Every top-level field this server knows: used, a documented no-op (user, metadata), or refused by name
// further on when set (tools, logprobs, ...). Anything else is refused unless the server ignores unknown fields.
static int known_field(ApiKind kind, const char *name) {
    static const char *const known[] = {"model",
                                        "max_tokens",
                                        "max_completion_tokens",
                                        "temperature",
                                        "top_p",
                                        "n",
                                        "stream",
                                        "stream_options",
                                        "seed",
                                        "stop",
                                        "response_format",
                                        "frequency_penalty",
                                        "presence_penalty",
                                        "user",
                                        "metadata",
                                        "tools",
                                        "functions",
                                        "logit_bias",
                                        "audio",
                                        "logprobs",
                                        NULL};
    if (!strcmp(name, kind == API_CHAT ? "messages" : "prompt")) return 1;
    for (int i = 0; known[i]; i++)
        if (!strcmp(name, known[i])) return 1;
    return 0;
}

// A field set to null asks for nothing, known or not.
static int check_fields(const cJSON *root, ApiKind kind, const ApiLimits *lim, ApiError *err) {
    for (const cJSON *f = root->child; f; f = f->next)
        if (!cJSON_IsNull(f) && !lim->ignore_unknown_fields && !known_field(kind, f->string))
            return bad(err, f->string, "Unrecognized request argument supplied: %s (this server refuses fields it does not know)",
                       f->string);
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(root, "user"), *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (user && !cJSON_IsNull(user) && !cJSON_IsString(user)) return bad(err, "user", "'user' must be a string");
    if (meta && !cJSON_IsNull(meta) && !cJSON_IsObject(meta)) return bad(err, "metadata", "'metadata' must be an object");
    return 0;
}

int api_parse_request(const char *body, size_t len, ApiKind kind, const ApiLimits *lim, ApiRequest *r, ApiError *err) {
    memset(r, 0, sizeof *r);
    r->kind = kind, r->max_tokens = -1, r->temperature = 1.0, r->top_p = 1.0, r->n = 1;
    cJSON *root = cJSON_ParseWithLength(body, len);
    int rc = -1;
    if (!root) {
        api_error_set(err, 400, "invalid_request_error", NULL, NULL, "the request body is not valid JSON");
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        bad(err, NULL, "the request body must be a JSON object");
        goto done;
    }
    if (check_fields(root, kind, lim, err)) goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsString(model)) {
        bad(err, "model", "'model' is required and must be a string");
        goto done;
    }
    r->model = ld_xstrdup(model->valuestring);
    if (kind == API_CHAT) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs)) {
            bad(err, "messages", "'messages' is required and must be a non-empty array");
            goto done;
        }
        int n = cJSON_GetArraySize(msgs);
        if (n > lim->max_messages) {
            bad(err, "messages", "%d messages is more than this server's limit of %d", n, lim->max_messages);
            goto done;
        }
        r->messages = ld_xcalloc((size_t)n, sizeof(ApiMessage));
        for (const cJSON *m = msgs->child; m; m = m->next) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            int i = r->n_messages;
            if (!cJSON_IsString(role) || (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "developer") &&
                                          strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant"))) {
                bad(err, "messages", "messages[%d].role must be one of system, developer, user, assistant", i);
                goto done;
            }
            char *text = content_text(content);
            if (!text) {
                bad(err, "messages", "messages[%d].content must be a string or an array of text parts", i);
                goto done;
            }
            // developer is the newer name of system
            r->messages[i].role = ld_xstrdup(strcmp(role->valuestring, "developer") ? role->valuestring : "system");
            r->messages[i].content = text;
            r->n_messages++;
        }
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child)) p = p->child;
        if (!cJSON_IsString(p)) {
            bad(err, "prompt", "'prompt' is required and must be a string");
            goto done;
        }
        r->prompt = ld_xstrdup(p->valuestring);
    }
    const int unset = -(1 << 30) - 1;
    int mt = unset;
    if (int_field(root, "max_tokens", -(1 << 30), 1 << 30, &mt, err) ||
        int_field(root, "max_completion_tokens", -(1 << 30), 1 << 30, &mt, err))
        goto done;
    if (mt != unset && (mt < 1 || mt > lim->max_tokens)) {
        bad(err, cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
            "max_tokens must be between 1 and %d, got %d", lim->max_tokens, mt);
        goto done;
    }
    r->max_tokens = mt == unset ? -1 : mt;
    if (num_field(root, "temperature", 0, 2, &r->temperature, err) || num_field(root, "top_p", 0, 1, &r->top_p, err) ||
        num_field(root, "frequency_penalty", -2, 2, &r->frequency_penalty, err) ||
        num_field(root, "presence_penalty", -2, 2, &r->presence_penalty, err) || int_field(root, "n", 1, lim->max_n, &r->n, err) ||
        bool_field(root, "stream", &r->stream, err))
        goto done;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (seed && !cJSON_IsNull(seed)) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble != floor(seed->valuedouble) || fabs(seed->valuedouble) > 9007199254740992.0) {
            bad(err, "seed", "'seed' must be an integer");
            goto done;
        }
        r->has_seed = 1, r->seed = (uint64_t)(int64_t)seed->valuedouble;
    }
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (stop && !cJSON_IsNull(stop)) {
        int ns = cJSON_IsString(stop) ? 1 : cJSON_IsArray(stop) ? cJSON_GetArraySize(stop) : -1;
        if (ns < 0 || ns > 4) {
            bad(err, "stop", "'stop' must be a string or an array of at most 4 strings");
            goto done;
        }
        r->stop = ld_xcalloc((size_t)ns + 1, sizeof(char *));
        for (const cJSON *s = cJSON_IsString(stop) ? stop : stop->child; s; s = cJSON_IsString(stop) ? NULL : s->next) {
            if (!cJSON_IsString(s) || !*s->valuestring) {
                bad(err, "stop", "'stop' entries must be non-empty strings");
                goto done;
            }
            r->stop[r->n_stop++] = ld_xstrdup(s->valuestring);
        }
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so) || bool_field(so, "include_usage", &r->include_usage, err)) {
            if (!cJSON_IsObject(so)) bad(err, "stream_options", "'stream_options' must be an object");
            goto done;
        }
    }
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (rf && !cJSON_IsNull(rf)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
        if (!cJSON_IsString(type)) {
            bad(err, "response_format", "'response_format' must be an object with a 'type'");
            goto done;
        }
        if (!strcmp(type->valuestring, "json_object")) {
            r->json_mode = 1;
        } else if (!strcmp(type->valuestring, "json_schema")) {
            const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
            const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
            if (!cJSON_IsObject(schema)) {
                bad(err, "response_format", "response_format.json_schema.schema must be an object");
                goto done;
            }
            r->json_mode = 2;
            r->json_schema = cJSON_PrintUnformatted(schema);
        } else if (strcmp(type->valuestring, "text")) {
            bad(err, "response_format", "response_format.type must be text, json_object or json_schema");
            goto done;
        }
    }
    // features this server does not offer: refused by name rather than silently ignored
    static const char *const unsupported[] = {"tools", "functions", "logit_bias", "audio", NULL};
    for (int i = 0; unsupported[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, unsupported[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && !cJSON_GetArraySize(v)) && !(cJSON_IsObject(v) && !v->child)) {
            bad(err, unsupported[i], "'%s' is not supported by this server", unsupported[i]);
            goto done;
        }
    }
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
    if (lp && (cJSON_IsTrue(lp) || cJSON_IsNumber(lp))) {
        bad(err, "logprobs", "'logprobs' is not supported by this server");
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc) api_request_free(r);
    return rc;
}

static cJSON *envelope(ApiKind kind, const char *id, long created, const char *model, int chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", kind == API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    return o;
}

static void add_usage(cJSON *o, int prompt_tokens, int completion_tokens) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
}

char *api_response_json(ApiKind kind, const char *id, long created, const char *model, const ApiChoice *choices, int n, int prompt_tokens,
                        int completion_tokens) {
    cJSON *o = envelope(kind, id, created, model, 0), *arr = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", i);
        if (kind == API_CHAT) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", choices[i].text);
        } else {
            cJSON_AddStringToObject(c, "text", choices[i].text);
        }
        cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", choices[i].finish_reason);
        cJSON_AddItemToArray(arr, c);
    }
    add_usage(o, prompt_tokens, completion_tokens);
    return print_json(o);
}

static char *event(cJSON *o) {
    char *j = print_json(o), *s = ld_xmalloc(strlen(j) + 9);
    sprintf(s, "data: %s\n\n", j);
    free(j);
    return s;
}

char *api_chunk_event(ApiKind kind, const char *id, long created, const char *model, int index, int role, const char *text,
                      const char *finish) {
    cJSON *o = envelope(kind, id, created, model, 1), *arr = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    if (kind == API_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (text) cJSON_AddStringToObject(d, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    cJSON_AddNullToObject(c, "logprobs");
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(arr, c);
    return event(o);
}

char *api_usage_event(ApiKind kind, const char *id, long created, const char *model, int prompt_tokens, int completion_tokens) {
    cJSON *o = envelope(kind, id, created, model, 1);
    cJSON_AddArrayToObject(o, "choices");
    add_usage(o, prompt_tokens, completion_tokens);
    return event(o);
}

char *api_models_json(const char *model, long created) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "llamaduo");
    cJSON_AddItemToArray(arr, m);
    return print_json(o);
}

// ---- a reply's text (what the proxy captures) -------------------------------------------------------------


static const char *choice_text(const cJSON *choice, int chat, int delta) {
    const cJSON *t = chat ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, delta ? "delta" : "message"), "content")
                          : cJSON_GetObjectItemCaseSensitive(choice, "text");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static const cJSON *first_choice(const cJSON *o) {
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    for (const cJSON *c = cJSON_IsArray(ch) ? ch->child : NULL; c; c = c->next) {
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(c, "index");
        if (!i || (cJSON_IsNumber(i) && i->valuedouble == 0)) return c;
    }
    return NULL;
}

char *api_reply_text(const char *body, size_t len, ApiKind kind, int stream) {
    int chat = kind == API_CHAT;
    char *acc = NULL;
    size_t n = 0;
    if (!stream) {
        cJSON *o = cJSON_ParseWithLength(body, len);
        ld_str_append(&acc, &n, choice_text(first_choice(o), chat, 0));
        cJSON_Delete(o);
        return acc;
    }
    for (const char *l = body; l < body + len;) {
        const char *end = memchr(l, '\n', (size_t)(body + len - l));
        if (!end) end = body + len;
        if (end - l > 6 && !strncmp(l, "data: ", 6) && strncmp(l + 6, "[DONE]", 6)) {
            cJSON *o = cJSON_ParseWithLength(l + 6, (size_t)(end - l - 6));
            ld_str_append(&acc, &n, choice_text(first_choice(o), chat, 1));
            cJSON_Delete(o);
        }
        l = end + 1;
    }
    return acc;
}

