// defines: the service-LLM wire formats — OpenAI-compatible Chat Completions, Anthropic Messages and Google
// Gemini generateContent — as pure functions: build an HTTP request from a chat request, parse a reply.
// No network here (host/llm_client.c sends); no key in anything but the header list built for one send.
#pragma once
#include <stddef.h>

typedef enum { WIRE_OPENAI, WIRE_ANTHROPIC, WIRE_GEMINI } WireFormat;

typedef struct {
    WireFormat wire;
    const char *base_url;  // e.g. https://api.openai.com/v1, https://api.anthropic.com, https://generativelanguage.googleapis.com
    const char *model;
    const char *api_key_env;  // the NAME of the environment variable holding the key (never the key)
    double temperature;
    int max_tokens;
    double price_in_per_mtok, price_out_per_mtok;  // dollars per million prompt / completion tokens
    // the provider's batch API instead of one call per request (host/batch.c): half the price, within a day
    int batch;
    double batch_poll_s, batch_deadline_s;  // poll interval; the longest a stage waits for its batches
    double batch_price_factor;  // the batch price as a share of the synchronous one (0.5 at OpenAI)
    int batch_max_requests;  // requests per batch at most (the provider's limit: 50,000 at OpenAI)
    int batch_unanswered;  // what an expired or partly failed batch did not answer: 0 failed, 1 submitted again, 2 sent one by one
} ProviderConfig;

typedef struct {
    const char *role;  // "system", "user", "assistant"
    const char *content;
} LlmMessage;

typedef struct {
    const LlmMessage *messages;
    int n_messages;
    int json_mode;  // ask for a JSON object (JSON mode / schema where the provider has it)
    const char *json_schema;  // optional JSON Schema text (OpenAI json_schema, Gemini responseSchema)
    int seed;  // optional sampling seed (OpenAI); also salts the cache key
    int keep_placeholders;  // with a privacy scrubber: the reply keeps <EMAIL_1>-style placeholders (synthetic data)
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
    int usage_known;  // the reply carried both counts as whole numbers in [0, LD_USAGE_MAX]
    int usage_estimated;  // the client replaced missing or implausible counts with estimates
    char *finish_reason;
    char *received_at;  // UTC time the provider's answer arrived (kept by the cache: a replay keeps it)
} LlmReply;

const char *wire_name(WireFormat w);
int wire_from_name(const char *name, WireFormat *out);
// The key header line for a key value, e.g. "Authorization: Bearer ..." (heap; the sender frees it at once).
char *provider_key_header(const ProviderConfig *p, const char *key);
int provider_build(const ProviderConfig *p, const LlmRequest *r, HttpRequest *out);
void http_request_free(HttpRequest *h);
// Token counts above this are not believed from any server (the largest context windows are ~2M tokens).
#define LD_USAGE_MAX 10000000
// Parses a 2xx body. -1 with a reason in err (truncated/invalid JSON, no text, provider-reported error); the
// usage is filled in either way when the body carries it (an unusable reply is still paid for). The text is
// returned as sent (the client checks its UTF-8); the finish reason is repaired to valid UTF-8.
int provider_parse(const ProviderConfig *p, const char *body, size_t len, LlmReply *out, char *err, size_t errcap);
// The provider's own error message from a non-2xx body (heap, valid UTF-8), or a generic one.
char *provider_error_message(const char *body, size_t len, long status);
void llm_reply_free(LlmReply *r);
double provider_cost(const ProviderConfig *p, long prompt_tokens, long completion_tokens);
