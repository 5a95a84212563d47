// defines: the OpenAI-compatible HTTP API's messages — requests to /v1/chat/completions and /v1/completions
// parsed and checked (every refusal an OpenAI-style error naming the parameter), and the response, stream-chunk,
// model-list and error bodies the official clients expect. Every body printed is valid UTF-8 JSON (bytes that
// are not UTF-8, in a request's fields echoed back, say, become U+FFFD). Plain data: no model, no sockets.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum { API_CHAT, API_COMPLETION } ApiKind;

typedef struct {
    size_t max_body;  // bytes
    int max_messages;
    int max_tokens;  // per choice
    int max_n;  // choices per request
    int ignore_unknown_fields;  // 0: a request field this server does not know is refused by name (400)
} ApiLimits;

typedef struct {
    char *role, *content;
} ApiMessage;

typedef struct {
    ApiKind kind;
    char *model;
    ApiMessage *messages;  // chat
    int n_messages;
    char *prompt;  // completions
    int max_tokens;  // -1: not given
    double temperature, top_p;
    double frequency_penalty, presence_penalty;  // -2..2, 0 off (engine/sampler.h)
    int has_seed;
    uint64_t seed;
    char **stop;
    int n_stop;
    int n;
    int stream, include_usage;
    int json_mode;  // 0 text, 1 json_object, 2 json_schema
    char *json_schema;  // the schema's JSON text (json_mode 2)
} ApiRequest;

typedef struct {
    int status;  // HTTP status
    char message[512];
    const char *type;  // invalid_request_error, authentication_error, ...
    char param[128];  // the offending parameter, or "" (null in the body)
    const char *code;  // e.g. context_length_exceeded, model_not_found, or NULL
} ApiError;

// 0, or -1 with *err filled (status 400 for bad JSON, types or values).
int api_parse_request(const char *body, size_t len, ApiKind kind, const ApiLimits *lim, ApiRequest *out, ApiError *err);
void api_request_free(ApiRequest *r);
void api_error_set(ApiError *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
char *api_error_json(const ApiError *e);  // {"error": {"message", "type", "param", "code"}}

typedef struct {
    const char *text;
    const char *finish_reason;  // "stop" | "length"
} ApiChoice;

// A whole (non-streamed) response body.
char *api_response_json(ApiKind kind, const char *id, long created, const char *model, const ApiChoice *choices, int n, int prompt_tokens,
                        int completion_tokens);
// One server-sent event "data: {...}\n\n" of a streamed response: the assistant role (first chunk of a chat
// choice, role != 0), a piece of text, or the finish reason (finish != NULL).
char *api_chunk_event(ApiKind kind, const char *id, long created, const char *model, int index, int role, const char *text,
                      const char *finish);
char *api_usage_event(ApiKind kind, const char *id, long created, const char *model, int prompt_tokens, int completion_tokens);
char *api_models_json(const char *model, long created);
// The first choice's text from a reply: a whole body, or the events of a stream (data: lines, deltas joined).
// NULL when there is none. Outside input: anything is accepted, nothing is trusted.
char *api_reply_text(const char *body, size_t len, ApiKind kind, int stream);
