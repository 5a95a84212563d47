// defines: the service-LLM wire formats — OpenAI-compatible Chat Completions, Anthropic Messages and Google
// Gemini generateContent — as pure functions: build an HTTP request from a chat request, parse a reply.
// No network here (host/llm_client.c sends); no key in anything but the header list built for one send.
#pragma once
#include <stddef.h>

typedef enum { WIRE_OPENAI, WIRE_ANTHROPIC, WIRE_GEMINI } WireFormat;

typedef struct {
    WireFormat wire;
    const char *base_url;     // e.g. https://api.openai.com/v1, https://api.anthropic.com, https://generativelanguage.googleapis.com
    const char *model;
    const char *api_key_env;  // the NAME of the environment variable holding the key (never the key)
    double temperature;
    int max_tokens;
    double price_in_per_mtok, price_out_per_mtok;  // dollars per million prompt / completion tokens
} ProviderConfig;

typedef struct {
    const char *role;  // "system", "user", "assistant"
    const char *content;
} LlmMessage;

typedef struct {
    const LlmMessage *messages;
    int n_messages;
    int json_mode;            // ask for a JSON object (JSON mode / schema where the provider has it)
    const char *json_schema;  // optional JSON Schema text (OpenAI json_schema, Gemini responseSchema)
    int seed;                 // optional sampling seed (OpenAI); also salts the cache key
} LlmRequest;

typedef struct {
    char *url;
    char *body;  // JSON; contains no key
    // headers other than the key's; the key header is added by the sender from the environment
    char *headers[4];
    int n_headers;
} HttpRequest;

typedef struct {
    char *text;  // the assistant's text
    long prompt_tokens, completion_tokens;
    char *finish_reason;
    char *received_at;  // UTC time the provider's answer arrived (kept by the cache: a replay keeps it)
} LlmReply;

const char *wire_name(WireFormat w);
int wire_from_name(const char *name, WireFormat *out);
// The key header line for a key value, e.g. "Authorization: Bearer ..." (heap; the sender frees it at once).
char *provider_key_header(const ProviderConfig *p, const char *key);
int provider_build(const ProviderConfig *p, const LlmRequest *r, HttpRequest *out);
void http_request_free(HttpRequest *h);
// Parses a 2xx body. -1 with a reason in err (truncated/invalid JSON, no text, provider-reported error).
int provider_parse(const ProviderConfig *p, const char *body, size_t len, LlmReply *out, char *err, size_t errcap);
// The provider's own error message from a non-2xx body (heap), or a generic one.
char *provider_error_message(const char *body, size_t len, long status);
void llm_reply_free(LlmReply *r);
double provider_cost(const ProviderConfig *p, long prompt_tokens, long completion_tokens);
