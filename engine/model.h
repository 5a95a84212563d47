// defines: ModelConfig (every architectural detail the forward pass needs), Model (weights in HF layout, each kept
// in its file's format: fp32, f16, bf16 or a ggml block format)
// and loading from an HF directory (config.json + safetensors, sharded or not) or a GGUF file.
#pragma once
#include <stdint.h>

#include "activation.h"
#include "dtype.h"
#include "tokenizer.h"

typedef enum { ARCH_LLAMA, ARCH_QWEN2, ARCH_GEMMA, ARCH_GEMMA2, ARCH_GEMMA3 } Arch;
typedef enum { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3 } RopeScaling;

typedef struct {
    double theta;
    RopeScaling scaling;
    double factor, low_freq_factor, high_freq_factor;
    int original_max_pos;
} RopeParams;

typedef struct {
    Arch arch;
    int vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, max_pos;
    float norm_eps;
    int norm_plus_one;  // Gemma: RMSNorm scales by (1 + w)
    int embed_scale;  // Gemma: embeddings × sqrt(dim)
    Activation act;
    int qkv_bias, o_bias;  // Qwen2: q/k/v; Llama attention_bias: all four
    int qk_norm;  // Gemma 3: RMSNorm of q and k over head_dim
    int sandwich_norms;  // Gemma 2/3: post-attention and post-feedforward norms before each residual add
    float attn_scale;  // multiplies q·k
    float attn_softcap, final_softcap;  // 0 = off
    int sliding_window;  // keys with i - j < W; 0 = off
    uint8_t *layer_local;  // [n_layers] 1 = sliding-window layer (uses rope_local)
    RopeParams rope_global, rope_local;
    int tied_embeddings;
} ModelConfig;

// A linear weight [out, in] kept in its file format (fp32, f16, bf16 or a ggml block format), usually inside
// the file's memory map: rows are dequantised on the fly by k_matmul_q.
typedef struct {
    const void *data;
    LdDtype type;
    size_t row_bytes;
} Linear;

typedef struct {
    // Shapes (D = dim, Hq/Hkv = heads, hd = head_dim, F = ffn_dim); linear weights are [out, in].
    float *attn_norm;  // [D]
    Linear wq, wk, wv, wo;  // [Hq*hd, D] [Hkv*hd, D] [Hkv*hd, D] [D, Hq*hd]
    float *bq, *bk, *bv, *bo;  // optional biases
    float *q_norm, *k_norm;  // [hd] (Gemma 3)
    float *post_attn_norm;  // [D] (Gemma 2/3)
    float *ffn_norm;  // [D]
    Linear w_gate, w_up, w_down;  // [F, D] [F, D] [D, F]
    float *post_ffn_norm;  // [D] (Gemma 2/3)
} LayerWeights;

typedef struct {
    char *path;
    ModelConfig cfg;
    Linear embed;  // [vocab, D]
    float *final_norm;  // [D]
    Linear lm_head;  // [vocab, D]; the same as embed when tied
    LayerWeights *layers;
    float *inv_freq_global, *inv_freq_local;  // [hd/2]
    Tokenizer *tok;
    char *chat_template;  // Jinja text from tokenizer_config.json / GGUF, or NULL
    char hf_prefix[32];  // HF tensor-name prefix of the loaded files ("model.", "language_model.model." ...)
    struct Lora *adapter;  // a LoRA applied on top of the weights without merging (owned: freed with the model)
    // owned storage
    void **blocks;
    int n_blocks, cap_blocks;
    void *files;  // the mapped files kept open for zero-copy fp32 tensors
} Model;

struct Gguf;
// The architecture as an HF config.json states it (`path` names it in errors) or as GGUF metadata does.
int model_config_from_hf_json(const char *json, size_t len, const char *path, ModelConfig *out);
int model_config_from_gguf(const struct Gguf *g, ModelConfig *out);
void model_config_free(ModelConfig *c);

// Loads an HF model directory or a .gguf file. NULL with ld_last_error() on failure.
Model *model_load(const char *path);
void model_free(Model *m);
const struct Gguf *model_gguf(const Model *m);  // the GGUF the model was loaded from, or NULL (an HF directory)
const char *arch_name(Arch a);

// One weight of a model as the files name it (the table loading, full fine-tuning and export share).
typedef struct {
    char hf[128], gguf[64];  // names in an HF directory (with the model's prefix) and in a GGUF
    int layer;  // -1: embeddings, final norm, lm_head
    int target;  // the LoraTarget of a layer's linear, else -1
    Linear *lin;  // a linear weight [rows, cols] ...
    float **vec;  // ... or a vector [cols] (rows 0)
    int64_t rows, cols;
    int is_norm;  // an RMSNorm weight (GGUF files hold Gemma's as 1 + w)
    int qk_heads;  // Q/K of llama-arch GGUFs: rows interleaved per head over this many heads (0: not)
} ModelTensor;
// The weights present in m's architecture, in file order; lm_head only when untied. Pointers into m.
int model_tensors(Model *m, ModelTensor **out);
// Every weight becomes an owned writable fp32 array (for full fine-tuning).
void model_make_trainable(Model *m);
// A zeroed fp32 model-shaped container for gradients of every weight (same table, same names).
Model *model_grad_new(const Model *m);
