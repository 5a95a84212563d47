#define _GNU_SOURCE
// Bad model files: truncated, corrupt or lying safetensors/GGUF, missing tensors, broken config.json and
// tokenizer.json. Each must fail to load with one line naming the file and the problem, and never crash.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "test_util.h"
#include "util.h"

static char g_tmp[256];

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static char *slurp(const char *path, size_t *n) {
    char *s = ld_read_file(path, n);
    if (!s) {
        fprintf(stderr, "%s\n", ld_last_error());
        exit(2);
    }
    return s;
}

// A copy of the tiny llama fixture directory in g_tmp/<name>, with one file replaced (or left out).
static char *model_dir_with(const char *name, const char *file, const void *data, size_t n) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, name);
    mkdir(dir, 0755);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        char src[1024], dst[1024];
        snprintf(src, sizeof src, "%s/tiny/llama/%s", LD_FIXTURES, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        if (!strcmp(files[i], file)) {
            if (data) write_file(dst, data, n);
            continue;
        }
        size_t len;
        char *s = slurp(src, &len);
        write_file(dst, s, len);
        free(s);
    }
    return dir;
}

static void expect_fail(const char *path, const char *what, const char *needle) {
    Model *m = model_load(path);
    CHECK(m == NULL, "%s: loaded although it should fail", what);
    if (m) {
        model_free(m);
        return;
    }
    const char *e = ld_last_error();
    CHECK(strchr(e, '\n') == NULL, "%s: error is not one line: %s", what, e);
    CHECK(strstr(e, needle) != NULL, "%s: error '%s' does not mention '%s'", what, e, needle);
    printf("ok  %-34s -> %s\n", what, e);
}

static void safetensors_cases(void) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tiny/llama/model.safetensors", LD_FIXTURES);
    size_t n;
    char *st = slurp(p, &n);
    uint64_t hlen;
    memcpy(&hlen, st, 8);
    char *buf = ld_xmalloc(n + 64);

    expect_fail(model_dir_with("st_trunc_header", "model.safetensors", st, 4), "safetensors shorter than 8 bytes", "model.safetensors");
    expect_fail(model_dir_with("st_trunc_data", "model.safetensors", st, n / 2), "safetensors truncated mid-data",
                "data_offsets out of range");
    memcpy(buf, st, n);
    uint64_t big = n * 4;
    memcpy(buf, &big, 8);
    expect_fail(model_dir_with("st_hlen", "model.safetensors", buf, n), "header length past EOF", "past the end");
    memcpy(buf, st, n);
    char *dt = memmem(buf, 8 + hlen, "\"F32\"", 5);
    memcpy(dt, "\"Q99\"", 5);
    expect_fail(model_dir_with("st_dtype", "model.safetensors", buf, n), "unknown dtype", "unknown dtype");
    memcpy(buf, st, n);
    memcpy(memmem(buf, 8 + hlen, "\"F32\"", 5), "\"F16\"", 5);  // shape x dtype no longer matches the span
    expect_fail(model_dir_with("st_span", "model.safetensors", buf, n), "shape x dtype != bytes", "shape x dtype");
    memcpy(buf, st, n);
    buf[8] = '[';
    expect_fail(model_dir_with("st_json", "model.safetensors", buf, n), "header not JSON", "not a JSON object");
    memcpy(buf, st, n);
    char *nm = memmem(buf, 8 + hlen, "model.norm.weight", 17);
    memcpy(nm, "model.nurm", 10);
    expect_fail(model_dir_with("st_missing", "model.safetensors", buf, n), "missing tensor", "missing tensor 'model.norm.weight'");
    free(buf);
    free(st);
}

static void config_cases(void) {
    const char *broken = "{\"model_type\": \"llama\", \"hidden_size\": ";
    expect_fail(model_dir_with("cfg_broken", "config.json", broken, strlen(broken)), "config.json broken JSON", "config.json");
    const char *arch = "{\"model_type\": \"gpt_neox\"}";
    expect_fail(model_dir_with("cfg_arch", "config.json", arch, strlen(arch)), "unknown architecture",
                "unsupported architecture 'gpt_neox'");
    const char *missing = "{\"model_type\": \"llama\", \"num_hidden_layers\": 2}";
    expect_fail(model_dir_with("cfg_missing", "config.json", missing, strlen(missing)), "config.json missing key", "missing 'hidden_size'");
    const char *lying =
        "{\"model_type\": \"llama\", \"hidden_size\": 96, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
        "\"num_key_value_heads\": 2, \"intermediate_size\": 96, \"vocab_size\": 320}";
    expect_fail(model_dir_with("cfg_lying", "config.json", lying, strlen(lying)), "config disagrees with weights", "has shape");
    const char *heads =
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 3, "
        "\"num_key_value_heads\": 2, \"intermediate_size\": 96, \"vocab_size\": 320}";
    expect_fail(model_dir_with("cfg_heads", "config.json", heads, strlen(heads)), "heads not a multiple of kv heads", "multiple");
    expect_fail(model_dir_with("cfg_absent", "config.json", NULL, 0), "config.json absent", "config.json");
    const char *tok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}";
    expect_fail(model_dir_with("tok_broken", "tokenizer.json", tok, strlen(tok)), "tokenizer.json malformed merge", "tokenizer.json");
    expect_fail(model_dir_with("tok_absent", "tokenizer.json", NULL, 0), "tokenizer.json absent", "tokenizer.json");
    // (found by fuzz_tokenizer_json: the second entry freed the text the first pointed to)
    const char *twice =
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<a>\", \"special\": true}, {\"id\": 0, \"content\": \"<b>\"}],"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}}";
    expect_fail(model_dir_with("tok_twice", "tokenizer.json", twice, strlen(twice)), "an added token id twice", "appears twice in added_tokens");
}

static void gguf_cases(void) {
    char p[1024], q[1024];
    snprintf(p, sizeof p, "%s/tiny/llama.gguf", LD_FIXTURES);
    size_t n;
    char *g = slurp(p, &n);
    char *buf = ld_xmalloc(n);
    snprintf(q, sizeof q, "%s/bad.gguf", g_tmp);
    size_t cuts[] = {3, 10, 30, 200, 2000, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_file(q, g, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "GGUF truncated at %zu bytes", cuts[i]);
        expect_fail(q, what, "bad.gguf");
    }
    memcpy(buf, g, n);
    memcpy(buf, "GGUX", 4);
    write_file(q, buf, n);
    expect_fail(q, "GGUF bad magic", "bad magic");
    memcpy(buf, g, n);
    buf[4] = 9;
    write_file(q, buf, n);
    expect_fail(q, "GGUF unsupported version", "version 9");
    memcpy(buf, g, n);
    char *arch = memmem(buf, n, "llama", 5);  // general.architecture value
    memcpy(arch, "llamb", 5);
    write_file(q, buf, n);
    expect_fail(q, "GGUF unknown architecture", "unsupported architecture 'llamb'");
    memcpy(buf, g, n);
    uint64_t huge = 1ull << 50;  // tensor count
    memcpy(buf + 8, &huge, 8);
    write_file(q, buf, n);
    expect_fail(q, "GGUF lying tensor count", "exceed the file size");
    free(buf);
    free(g);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/llamaduo-bad-%d", (int)getpid());
    mkdir(g_tmp, 0755);
    safetensors_cases();
    config_cases();
    gguf_cases();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_finish("test_bad_input");
}
