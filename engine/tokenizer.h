// defines: Tokenizer — BPE in the two flavours real checkpoints use: byte-level with regex pre-tokenizers
// (Llama 3, Qwen, SmolLM) and SentencePiece-style over characters with ▁ for spaces and byte fallback
// (Gemma), loaded from HF tokenizer.json or from GGUF tokenizer.ggml.* metadata.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer Tokenizer;
struct Gguf;

enum {
    TOK_ADD_SPECIAL = 1,  // apply the post-processor: BOS (and EOS) as the tokenizer declares
    TOK_PARSE_SPECIAL = 2,  // special-token text in the input becomes the special token
};

// tokenizer.json text; `name` names it in errors. NULL with ld_last_error() on bad input.
Tokenizer *tok_load_hf_json(const char *json, size_t len, const char *name);
Tokenizer *tok_load_hf_file(const char *path);
Tokenizer *tok_load_gguf(const struct Gguf *g);
void tok_free(Tokenizer *t);

// Encodes len bytes of text (invalid UTF-8 is replaced by U+FFFD first). Returns the count, ids in *out
// (heap, caller frees), or -1 on error.
int tok_encode(const Tokenizer *t, const char *text, size_t len, int flags, int **out);
// Like tok_encode, but special-token text is parsed only outside the given byte spans [start, end):
// chat templates protect message contents this way.
int tok_encode_protected(const Tokenizer *t, const char *text, size_t len, int flags, const size_t *spans, int n_spans, int **out);
// Decodes ids to UTF-8 text (heap). Invalid UTF-8 becomes U+FFFD, as HF does.
char *tok_decode(const Tokenizer *t, const int *ids, int n, int skip_special);
// Raw bytes of one token as it contributes to decoded text (no UTF-8 repair): for streaming output.
// Returns the byte count written to buf (at most cap).
int tok_token_bytes(const Tokenizer *t, int id, char *buf, int cap);

int tok_vocab_size(const Tokenizer *t);
int tok_bos(const Tokenizer *t);  // -1 when none
int tok_eos(const Tokenizer *t);
int tok_is_special(const Tokenizer *t, int id);
int tok_find(const Tokenizer *t, const char *text);  // id of a token whose text is exactly this, or -1
const char *tok_text(const Tokenizer *t, int id);  // the token's vocabulary text (NUL-terminated)
// Overrides BOS/EOS ids from a model's own config (negative leaves one unchanged).
void tok_set_bos_eos(Tokenizer *t, int bos, int eos);
