#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *k_names[CHAT_FAMILY_COUNT] = {"llama3", "gemma", "chatml", "mistral"};
static const char *k_eot[CHAT_FAMILY_COUNT] = {"<|eot_id|>", "<end_of_turn>", "<|im_end|>", "</s>"};

const char *chat_family_name(ChatFamily f) { return k_names[f]; }
const char *chat_end_of_turn(const ChatTemplate *t) { return k_eot[t->family]; }

int chat_family_from_name(const char *name, ChatFamily *out) {
    for (int i = 0; i < CHAT_FAMILY_COUNT; i++)
        if (!strcmp(name, k_names[i])) {
            *out = (ChatFamily)i;
            return 0;
        }
    ld_set_error("unknown chat template family '%s' (llama3, gemma, chatml, mistral)", name);
    return -1;
}

// A chatml template that writes a fixed system prompt when the conversation has none: the literal between
// "<|im_start|>system\n" and "<|im_end|>" in a quoted string, with no template expressions inside.
static char *find_default_system(const char *j) {
    const char *key = "<|im_start|>system\n";
    for (const char *p = strstr(j, key); p; p = strstr(p + 1, key)) {
        const char *s = p + strlen(key), *e = strstr(s, "<|im_end|>");
        if (!e || e == s) continue;
        int literal = 1;
        for (const char *c = s; c < e && literal; c++)
            if (*c == '\'' || *c == '"' || *c == '{' || *c == '}' || *c == '+') literal = 0;
        if (!literal) continue;
        char *out = ld_xmalloc((size_t)(e - s) + 1);
        memcpy(out, s, (size_t)(e - s));
        out[e - s] = 0;
        return out;
    }
    return NULL;
}

int chat_template_init(ChatTemplate *t, const char *jinja, const char *override_family) {
    memset(t, 0, sizeof *t);
    if (override_family) {
        if (chat_family_from_name(override_family, &t->family)) return -1;
    } else if (!jinja) {
        ld_set_error("the model has no chat template; pass --chat-template llama3|gemma|chatml|mistral");
        return -1;
    } else if (strstr(jinja, "<|start_header_id|>")) {
        t->family = CHAT_LLAMA3;
    } else if (strstr(jinja, "<start_of_turn>")) {
        t->family = CHAT_GEMMA;
    } else if (strstr(jinja, "<|im_start|>")) {
        t->family = CHAT_CHATML;
    } else if (strstr(jinja, "[INST]")) {
        t->family = CHAT_MISTRAL;
    } else {
        char head[61];
        snprintf(head, sizeof head, "%s", jinja);
        for (char *c = head; *c; c++)
            if (*c == '\n') *c = ' ';
        ld_set_error(
            "unrecognised chat template \"%s...\"; pick a family with --chat-template "
            "llama3|gemma|chatml|mistral",
            head);
        return -1;
    }
    switch (t->family) {
        case CHAT_LLAMA3:
            t->bos = ld_xstrdup("<|begin_of_text|>");
            break;
        case CHAT_GEMMA:
            t->bos = ld_xstrdup("<bos>");
            break;
        case CHAT_MISTRAL:
            t->bos = ld_xstrdup("<s>");
            t->eos = ld_xstrdup("</s>");
            break;
        case CHAT_CHATML:
            if (jinja) {
                t->default_system = find_default_system(jinja);
                t->think_prefix = strstr(jinja, "</think>") && strstr(jinja, "reasoning_content");
            }
            break;
        default:
            break;
    }
    return 0;
}

void chat_template_free(ChatTemplate *t) {
    free(t->default_system);
    free(t->bos);
    free(t->eos);
    memset(t, 0, sizeof *t);
}

typedef struct {
    ChatRendered *r;
    size_t cap;
} Buf;

static void put(Buf *b, const char *s, size_t n) {
    ChatRendered *r = b->r;
    if (r->len + n + 1 > b->cap) r->text = ld_xrealloc(r->text, b->cap = (r->len + n + 1) * 2);
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = 0;
}
static void puts_(Buf *b, const char *s) { put(b, s, strlen(s)); }

static void add_span(size_t **v, int *n, size_t a, size_t e) {
    *v = ld_xrealloc(*v, sizeof(size_t) * 2 * (size_t)(*n + 1));
    (*v)[2 * *n] = a;
    (*v)[2 * *n + 1] = e;
    (*n)++;
}

// Content, optionally trimmed of surrounding whitespace (Jinja's |trim), recorded as a protected span.
static void put_content(Buf *b, const char *s, int trim) {
    size_t n = strlen(s);
    if (trim) {
        while (n && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, n--;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    }
    size_t a = b->r->len;
    put(b, s, n);
    add_span(&b->r->content_spans, &b->r->n_content, a, b->r->len);
}

static int valid_role(const char *r) { return !strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant"); }

int chat_render(const ChatTemplate *t, const ChatMessage *msgs, int n, int add_gen, ChatRendered *out) {
    memset(out, 0, sizeof *out);
    Buf b = {out, 0};
    puts_(&b, "");
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !valid_role(msgs[i].role) || !msgs[i].content) {
            ld_set_error("message %d: role must be system, user or assistant, with string content", i + 1);
            chat_rendered_free(out);
            return -1;
        }
    }
    const char *system = NULL;
    int first = 0;
    if (n && !strcmp(msgs[0].role, "system") && t->family != CHAT_LLAMA3 && t->family != CHAT_CHATML) {
        system = msgs[0].content;  // gemma and mistral fold the system prompt into the first user turn
        first = 1;
    }
    int last_user = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(msgs[i].role, "user")) last_user = i;
    if (t->bos) puts_(&b, t->bos);
    if (t->family == CHAT_CHATML && t->default_system && (n == 0 || strcmp(msgs[0].role, "system"))) {
        puts_(&b, "<|im_start|>system\n");
        puts_(&b, t->default_system);
        puts_(&b, "<|im_end|>\n");
    }
    for (int i = first; i < n; i++) {
        const char *role = msgs[i].role;
        int is_asst = !strcmp(role, "assistant");
        if ((t->family == CHAT_GEMMA || t->family == CHAT_MISTRAL) && i > first) {
            if (!strcmp(role, "system") || (is_asst == !strcmp(msgs[i - 1].role, "assistant"))) {
                ld_set_error(
                    "message %d: %s conversations must alternate user/assistant after an optional "
                    "leading system message",
                    i + 1, k_names[t->family]);
                chat_rendered_free(out);
                return -1;
            }
        }
        if ((t->family == CHAT_GEMMA || t->family == CHAT_MISTRAL) && i == first && is_asst) {
            ld_set_error("message %d: %s conversations must start with a user message", i + 1, k_names[t->family]);
            chat_rendered_free(out);
            return -1;
        }
        size_t turn_start;
        switch (t->family) {
            case CHAT_LLAMA3:
                puts_(&b, "<|start_header_id|>");
                puts_(&b, role);
                puts_(&b, "<|end_header_id|>\n\n");
                turn_start = out->len;
                put_content(&b, msgs[i].content, 1);
                puts_(&b, "<|eot_id|>");
                break;
            case CHAT_GEMMA:
                puts_(&b, "<start_of_turn>");
                puts_(&b, is_asst ? "model" : role);
                puts_(&b, "\n");
                if (i == first && system) {
                    put_content(&b, system, 0);
                    puts_(&b, "\n\n");
                }
                turn_start = out->len;
                put_content(&b, msgs[i].content, 1);
                puts_(&b, "<end_of_turn>\n");
                break;
            case CHAT_CHATML:
                puts_(&b, "<|im_start|>");
                puts_(&b, role);
                puts_(&b, "\n");
                turn_start = out->len;
                if (is_asst && t->think_prefix && i > last_user) puts_(&b, "<think>\n\n</think>\n\n");
                put_content(&b, msgs[i].content, 0);
                puts_(&b, "<|im_end|>\n");
                break;
            default:  // mistral
                if (is_asst) {
                    turn_start = out->len;
                    put_content(&b, msgs[i].content, 0);
                    puts_(&b, t->eos);
                } else {
                    puts_(&b, "[INST] ");
                    if (i == first && system) {
                        put_content(&b, system, 0);
                        puts_(&b, "\n\n");
                    }
                    turn_start = out->len;
                    put_content(&b, msgs[i].content, 0);
                    puts_(&b, " [/INST]");
                }
                break;
        }
        if (is_asst) {
            // the trained span: content and the end-of-turn marker, not the trailing newline
            const char *eot = k_eot[t->family];
            char *end = strstr(out->text + turn_start, eot);
            size_t e = end ? (size_t)(end - out->text) + strlen(eot) : out->len;
            add_span(&out->assistant_spans, &out->n_assistant, turn_start, e);
        }
    }
    if (add_gen) {
        switch (t->family) {
            case CHAT_LLAMA3:
                puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
            case CHAT_GEMMA:
                puts_(&b, "<start_of_turn>model\n");
                break;
            case CHAT_CHATML:
                puts_(&b, "<|im_start|>assistant\n");
                break;
            default:
                break;
        }
    }
    return 0;
}

void chat_rendered_free(ChatRendered *r) {
    free(r->text);
    free(r->content_spans);
    free(r->assistant_spans);
    memset(r, 0, sizeof *r);
}
