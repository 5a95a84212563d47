#include "provider.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *k_wire[] = {"openai", "anthropic", "gemini"};

const char *wire_name(WireFormat w) { return k_wire[w]; }

int wire_from_name(const char *name, WireFormat *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, k_wire[i])) {
            *out = (WireFormat)i;
            return 0;
        }
    return -1;
}

static char *join_url(const char *base, const char *path) {
    size_t a = strlen(base);
    while (a && base[a - 1] == '/') a--;
    size_t n = a + strlen(path) + 1;
    char *u = ld_xmalloc(n);
    snprintf(u, n, "%.*s%s", (int)a, base, path);
    return u;
}

char *provider_key_header(const ProviderConfig *p, const char *key) {
    const char *fmt = p->wire == WIRE_OPENAI      ? "Authorization: Bearer %s"
                      : p->wire == WIRE_ANTHROPIC ? "x-api-key: %s"
                                                  : "x-goog-api-key: %s";
    size_t n = strlen(fmt) + strlen(key) + 1;
    char *h = ld_xmalloc(n);
    snprintf(h, n, fmt, key);
    return h;
}

int provider_build(const ProviderConfig *p, const LlmRequest *r, HttpRequest *out) {
    memset(out, 0, sizeof *out);
    cJSON *body = cJSON_CreateObject();
    out->headers[out->n_headers++] = ld_xstrdup("Content-Type: application/json");
    cJSON *schema = r->json_schema ? cJSON_Parse(r->json_schema) : NULL;
    if (r->json_schema && !schema) {
        ld_set_error("json_schema is not valid JSON");
        cJSON_Delete(body);
        http_request_free(out);
        return -1;
    }
    if (p->wire == WIRE_OPENAI) {
        out->url = join_url(p->base_url, "/chat/completions");
        cJSON_AddStringToObject(body, "model", p->model);
        cJSON *msgs = cJSON_AddArrayToObject(body, "messages");
        for (int i = 0; i < r->n_messages; i++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", r->messages[i].role);
            cJSON_AddStringToObject(m, "content", r->messages[i].content);
            cJSON_AddItemToArray(msgs, m);
        }
        cJSON_AddNumberToObject(body, "temperature", p->temperature);
        cJSON_AddNumberToObject(body, "max_tokens", p->max_tokens);
        if (r->seed) cJSON_AddNumberToObject(body, "seed", r->seed);
        if (r->json_mode) {
            cJSON *rf = cJSON_AddObjectToObject(body, "response_format");
            if (schema) {
                cJSON_AddStringToObject(rf, "type", "json_schema");
                cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
                cJSON_AddStringToObject(js, "name", "reply");
                cJSON_AddItemToObject(js, "schema", schema);
                schema = NULL;
            } else {
                cJSON_AddStringToObject(rf, "type", "json_object");
            }
        }
    } else if (p->wire == WIRE_ANTHROPIC) {
        out->url = join_url(p->base_url, "/v1/messages");
        out->headers[out->n_headers++] = ld_xstrdup("anthropic-version: 2023-06-01");
        cJSON_AddStringToObject(body, "model", p->model);
        cJSON_AddNumberToObject(body, "max_tokens", p->max_tokens);
        cJSON_AddNumberToObject(body, "temperature", p->temperature);
        cJSON *msgs = cJSON_AddArrayToObject(body, "messages");
        for (int i = 0; i < r->n_messages; i++) {
            if (!strcmp(r->messages[i].role, "system")) {  // Anthropic takes the system prompt apart
                cJSON_AddStringToObject(body, "system", r->messages[i].content);
                continue;
            }
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", r->messages[i].role);
            cJSON_AddStringToObject(m, "content", r->messages[i].content);
            cJSON_AddItemToArray(msgs, m);
        }
    } else {
        char path[512];
        snprintf(path, sizeof path, "/v1beta/models/%s:generateContent", p->model);
        out->url = join_url(p->base_url, path);
        cJSON *contents = cJSON_AddArrayToObject(body, "contents");
        for (int i = 0; i < r->n_messages; i++) {
            cJSON *parts = cJSON_CreateArray(), *part = cJSON_CreateObject();
            cJSON_AddStringToObject(part, "text", r->messages[i].content);
            cJSON_AddItemToArray(parts, part);
            if (!strcmp(r->messages[i].role, "system")) {
                cJSON *si = cJSON_AddObjectToObject(body, "systemInstruction");
                cJSON_AddItemToObject(si, "parts", parts);
                continue;
            }
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "role", strcmp(r->messages[i].role, "assistant") ? "user" : "model");
            cJSON_AddItemToObject(c, "parts", parts);
            cJSON_AddItemToArray(contents, c);
        }
        cJSON *gc = cJSON_AddObjectToObject(body, "generationConfig");
        cJSON_AddNumberToObject(gc, "temperature", p->temperature);
        cJSON_AddNumberToObject(gc, "maxOutputTokens", p->max_tokens);
        if (r->json_mode) {
            cJSON_AddStringToObject(gc, "responseMimeType", "application/json");
            if (schema) {
                cJSON_AddItemToObject(gc, "responseSchema", schema);
                schema = NULL;
            }
        }
    }
    cJSON_Delete(schema);
    out->body = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    return 0;
}

void http_request_free(HttpRequest *h) {
    free(h->url);
    free(h->body);
    for (int i = 0; i < h->n_headers; i++) free(h->headers[i]);
    memset(h, 0, sizeof *h);
}

// One usage count: a whole number in [0, LD_USAGE_MAX], else 0 and not known (negative counts would pay the
// budget back, 1e30 overflows a long).
static int usage_count(const cJSON *usage, const char *k, long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, k);
    *out = 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= LD_USAGE_MAX) || v->valuedouble != floor(v->valuedouble)) return 0;
    *out = (long)v->valuedouble;
    return 1;
}

static void parse_usage(const cJSON *usage, const char *prompt_key, const char *completion_key, LlmReply *out) {
    int a = usage_count(usage, prompt_key, &out->prompt_tokens), b = usage_count(usage, completion_key, &out->completion_tokens);
    out->usage_known = a && b;
}

int provider_parse(const ProviderConfig *p, const char *body, size_t len, LlmReply *out, char *err, size_t errcap) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errcap, "reply is not a JSON object (%zu bytes; truncated or invalid)", len);
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *text = NULL, *fin = NULL;
    if (p->wire == WIRE_OPENAI) {
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
        text = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "message"), "content");
        fin = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        parse_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), "prompt_tokens", "completion_tokens", out);
    } else if (p->wire == WIRE_ANTHROPIC) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(root, "content");
        for (const cJSON *c = content ? content->child : NULL; c; c = c->next) {
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(c, "type");
            if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "text")) {
                text = cJSON_GetObjectItemCaseSensitive(c, "text");
                break;
            }
        }
        fin = cJSON_GetObjectItemCaseSensitive(root, "stop_reason");
        parse_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), "input_tokens", "output_tokens", out);
    } else {
        const cJSON *cand = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "candidates"), 0);
        const cJSON *parts = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cand, "content"), "parts");
        text = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(parts, 0), "text");
        fin = cJSON_GetObjectItemCaseSensitive(cand, "finishReason");
        parse_usage(cJSON_GetObjectItemCaseSensitive(root, "usageMetadata"), "promptTokenCount", "candidatesTokenCount", out);
    }
    if (!cJSON_IsString(text)) {
        snprintf(err, errcap, "reply has no text (%s format)", k_wire[p->wire]);
        cJSON_Delete(root);
        return -1;
    }
    out->text = ld_xstrdup(text->valuestring);
    const char *f = cJSON_IsString(fin) ? fin->valuestring : "";
    out->finish_reason = ld_utf8_repair(f, strlen(f), NULL);
    cJSON_Delete(root);
    return 0;
}

char *provider_error_message(const char *body, size_t len, long status) {
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");  // all three nest {"error": {"message"}}
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    char buf[512];
    if (cJSON_IsString(m))
        snprintf(buf, sizeof buf, "HTTP %ld: %s", status, m->valuestring);
    else
        snprintf(buf, sizeof buf, "HTTP %ld", status);
    cJSON_Delete(root);
    return ld_utf8_repair(buf, strlen(buf), NULL);  // it ends up in JSON records (and the cut may split a character)
}

void llm_reply_free(LlmReply *r) {
    free(r->text);
    free(r->finish_reason);
    free(r->received_at);
    r->text = r->finish_reason = r->received_at = NULL;
}

double provider_cost(const ProviderConfig *p, long prompt_tokens, long completion_tokens) {
    return (prompt_tokens * p->price_in_per_mtok + completion_tokens * p->price_out_per_mtok) / 1e6;
}
