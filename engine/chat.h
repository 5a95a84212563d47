// defines: chat template families and their rendering. The engine recognises a family from the Jinja text
// of tokenizer_config.json / GGUF and renders it itself; training and inference share this one code path.
#pragma once
#include <stddef.h>

typedef enum { CHAT_LLAMA3, CHAT_GEMMA, CHAT_CHATML, CHAT_MISTRAL, CHAT_FAMILY_COUNT } ChatFamily;

typedef struct {
    const char *role;  // "system", "user", "assistant"
    const char *content;
} ChatMessage;

typedef struct {
    ChatFamily family;
    char *default_system;  // chatml templates that insert a system prompt when none is given (SmolLM2, Qwen2.5)
    int think_prefix;  // Qwen3: assistant turns after the last user turn carry an empty <think> block
    char *bos;  // BOS text the template starts with (llama3, gemma, mistral), or NULL
    char *eos;  // text closing an assistant turn for mistral ("</s>")
} ChatTemplate;

typedef struct {
    char *text;
    size_t len;
    size_t *content_spans;  // [2*n_content] byte ranges holding message contents (no special tokens there)
    int n_content;
    size_t *assistant_spans;  // [2*n_assistant] assistant content + end-of-turn marker: the trained tokens
    int n_assistant;
} ChatRendered;

const char *chat_family_name(ChatFamily f);
int chat_family_from_name(const char *name, ChatFamily *out);  // "llama3" | "gemma" | "chatml" | "mistral"
// Recognises the family of a Jinja template. -1 with an error naming the template when unrecognised.
int chat_template_init(ChatTemplate *t, const char *jinja, const char *override_family);
void chat_template_free(ChatTemplate *t);
// The text that ends an assistant turn (the generation stop marker), e.g. "<|eot_id|>".
const char *chat_end_of_turn(const ChatTemplate *t);
// Renders messages; add_generation_prompt appends the assistant header. -1 with an error on bad roles.
int chat_render(const ChatTemplate *t, const ChatMessage *msgs, int n, int add_generation_prompt, ChatRendered *out);
void chat_rendered_free(ChatRendered *r);
