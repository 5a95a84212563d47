// The option schemas (base/options.h) through the training options: defaults, command-line text and config values
// checked the same way, errors that name the option and its source, the cross-option checks, the help text.
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "test_util.h"
#include "train_options.h"
#include "util.h"

static int err_has(const char *s) { return strstr(ld_last_error(), s) != NULL; }

static void test_defaults_and_text(void) {
    TrainOptions o;
    train_options_init(&o);
    CHECK(o.rank == 8 && o.epochs == 3 && o.tokens_per_step == 1024 && o.save_every == 20, "integer defaults");
    CHECK(o.dropout == 0.05 && o.warmup == 0.1 && o.max_grad_norm == 1.0 && isnan(o.alpha) && isnan(o.lr), "number defaults (alpha and lr: not given)");
    CHECK(!strcmp(o.method, "lora") && !strcmp(o.schedule, "cosine") && !strcmp(o.targets, "all-linear") && !o.model, "string defaults");
    const OptionSpec *rank = options_find_flag(k_train_options, "--rank"), *tps = options_find_flag(k_train_options, "--tokens-per-step");
    CHECK(rank && tps && !strcmp(tps->key, "tokens_per_step"), "flags map to keys, '-' for '_'");
    CHECK(!options_find_flag(k_train_options, "--tokens_per_step") && !options_find_flag(k_train_options, "rank"), "only --dashed flags");
    CHECK(options_set_text(rank, &o, "16") == 0 && o.rank == 16, "a value from the command line");
    CHECK(options_set_text(rank, &o, "0") && err_has("--rank must be a whole number in [1, 1024], not 0"), "%s",
          ld_last_error());
    CHECK(options_set_text(rank, &o, "2.5") && err_has("whole number"), "a fraction for an integer");
    CHECK(options_set_text(rank, &o, "8x") && err_has("must be a number, not '8x'"), "%s", ld_last_error());
    const OptionSpec *sched = options_find_flag(k_train_options, "--schedule"), *rs = options_find_flag(k_train_options, "--rslora");
    CHECK(options_set_text(sched, &o, "linear") == 0 && !strcmp(o.schedule, "linear"), "a choice");
    CHECK(options_set_text(sched, &o, "cos") && err_has("--schedule must be one of cosine|linear|constant, not 'cos'"), "%s", ld_last_error());
    CHECK(options_set_text(rs, &o, "true") == 0 && o.rslora == 1, "a boolean");
    CHECK(options_set_text(rs, &o, "yes") && err_has("true or false"), "a boolean's bad value");
    CHECK(o.rank == 16, "a refused value leaves the option as it was");
}

static cJSON *parse(const char *json) {
    cJSON *j = cJSON_Parse(json);
    if (!j) fprintf(stderr, "bad test JSON: %s\n", json), exit(1);
    return j;
}

static void test_config(void) {
    TrainOptions o;
    train_options_init(&o);
    cJSON *j = parse("{\"rank\": 4, \"lr\": 0.001, \"rslora\": true, \"targets\": \"q_proj,v_proj\", \"val\": \"\"}");
    CHECK(train_options_from_json(&o, j, "student.train", "run.yaml") == 0, "%s", ld_last_error());
    CHECK(o.rank == 4 && o.lr == 0.001 && o.rslora && !strcmp(o.targets, "q_proj,v_proj") && !o.val, "values from a config");
    cJSON_Delete(j);
    j = parse("{\"epochz\": 2}");
    CHECK(train_options_from_json(&o, j, "student.train", "run.yaml") && err_has("run.yaml: unknown key 'student.train.epochz' (known: model,"),
          "%s", ld_last_error());
    cJSON_Delete(j);
    j = parse("{\"rank\": \"8\"}");
    CHECK(train_options_from_json(&o, j, "train", "t.yaml") && err_has("t.yaml: 'train.rank' must be a number"), "%s", ld_last_error());
    cJSON_Delete(j);
    j = parse("{\"dropout\": 0.99}");
    CHECK(train_options_from_json(&o, j, "train", "t.yaml") && err_has("'train.dropout' must be a number in [0, 0.95], not 0.99"), "%s",
          ld_last_error());
    cJSON_Delete(j);
    j = parse("[1]");
    CHECK(train_options_from_json(&o, j, "train", "t.yaml") && err_has("'train' must be a mapping"), "%s", ld_last_error());
    cJSON_Delete(j);
}

// "" means "not given": the default where there is one, refused where the key is required; null keeps the default.
static void test_empty_and_null(void) {
    TrainOptions o;
    train_options_init(&o);
    cJSON *j = parse("{\"targets\": \"\", \"val\": \"\", \"rank\": null, \"schedule\": null}");
    CHECK(train_options_from_json(&o, j, "train", "t.yaml") == 0, "%s", ld_last_error());
    CHECK(!strcmp(o.targets, "all-linear") && !o.val && o.rank == 8 && !strcmp(o.schedule, "cosine"), "empty and null keep the defaults");
    CHECK(train_options_check(&o, 0) == 0, "the defaults check: %s", ld_last_error());
    cJSON_Delete(j);
    CHECK(options_set_text(options_find_flag(k_train_options, "--targets"), &o, "") == 0 && !strcmp(o.targets, "all-linear"),
          "--targets '' is the default");
    static const OptionSpec k_name[] = {{"name", OPT_STR, 0, 0, 0, NULL, NULL, "needed", NULL, 1}, {NULL}};
    struct { const char *name; } n = {"x"};
    j = parse("{\"name\": \"\"}");
    CHECK(options_from_json(k_name, &n, j, "task", "c.yaml") && err_has("c.yaml: 'task.name' must not be empty"), "%s", ld_last_error());
    cJSON_Delete(j);
}

static void test_checks(void) {
    TrainOptions o;
    train_options_init(&o);
    CHECK(train_options_check(&o, 1) && err_has("needs model, train and out"), "paths asked for");
    CHECK(train_options_check(&o, 0) == 0 && o.alpha == 16 && o.lr == 2e-4, "defaults filled in: alpha 2 x rank, LoRA's lr");
    train_options_init(&o);
    options_set_text(options_find_flag(k_train_options, "--method"), &o, "full");
    CHECK(train_options_check(&o, 0) == 0 && o.lr == 1e-5, "full fine-tuning's lr");
    options_set_text(options_find_flag(k_train_options, "--device"), &o, "cuda");
    CHECK(train_options_check(&o, 0) == 0, "full fine-tuning on the GPU: %s", ld_last_error());
    options_set_text(options_find_flag(k_train_options, "--precision"), &o, "bf16");
    CHECK(train_options_check(&o, 0) == 0, "full fine-tuning on the GPU in bf16 (fp32 masters): %s", ld_last_error());
    train_options_init(&o);
    options_set_text(options_find_flag(k_train_options, "--targets"), &o, "q_proj,,zz");
    CHECK(train_options_check(&o, 0) && err_has("unknown module 'zz'"), "%s", ld_last_error());
    CHECK(train_targets_mask("all-linear") == 127 && train_targets_mask("q_proj,down_proj") == (1 | 64) && train_targets_mask(",") < 0,
          "target masks");
}

static void test_help(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    options_help(k_train_options, f);
    fclose(f);
    int lines = 0;
    for (const OptionSpec *o = k_train_options; o->key; o++, lines++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", o->key);
        for (char *p = flag; *p; p++) *p = *p == '_' ? '-' : *p;
        CHECK(strstr(buf, flag) != NULL, "help names %s", flag);
    }
    CHECK(strstr(buf, "--schedule cosine|linear|constant") && strstr(buf, "(default 1024)"), "help shows choices and defaults");
    CHECK(lines > 25, "the schema has every training option (%d)", lines);
    free(buf);
}

// Nested sections and borrowed mappings fill only their own fields (a section's row has no field of its own).
typedef struct {
    long guard;  // at offset 0, where a section row's offset points
    int a, inner;
    const cJSON *m;
} Demo;
static const OptionSpec k_inner[] = {{"inner", OPT_INT, offsetof(Demo, inner), 0, 10, "3", NULL, "a nested value"}, {NULL}};
static const OptionSpec k_demo[] = {{"a", OPT_INT, offsetof(Demo, a), 0, 5, "1", NULL, "a value"},
                                    {"m", OPT_MAP, offsetof(Demo, m), 0, 0, NULL, NULL, "a mapping read elsewhere"},
                                    {"sec", OPT_SECTION, 0, 0, 0, NULL, NULL, "a nested section", k_inner},
                                    {NULL}};

static void test_sections(void) {
    Demo d = {.guard = 0x5a5a5a5a5a5aL};
    options_defaults(k_demo, &d);
    CHECK(d.guard == 0x5a5a5a5a5a5aL && d.a == 1 && d.inner == 3 && d.m == NULL, "defaults, and nothing else written");
    cJSON *j = parse("{\"a\": 2, \"m\": {\"x\": 1}, \"sec\": {\"inner\": 7}}");
    CHECK(options_from_json(k_demo, &d, j, "top", "c.yaml") == 0, "%s", ld_last_error());
    CHECK(d.guard == 0x5a5a5a5a5a5aL && d.a == 2 && d.inner == 7 && d.m == cJSON_GetObjectItemCaseSensitive(j, "m"), "values read");
    cJSON_Delete(j);
    j = parse("{\"sec\": {\"inner\": 11}}");
    CHECK(options_from_json(k_demo, &d, j, "top", "c.yaml") && err_has("c.yaml: 'top.sec.inner' must be a whole number in [0, 10], not 11"),
          "%s", ld_last_error());
    cJSON_Delete(j);
    j = parse("{\"sec\": {\"x\": 1}}");
    CHECK(options_from_json(k_demo, &d, j, "top", "c.yaml") && err_has("unknown key 'top.sec.x' (known: inner)"), "%s", ld_last_error());
    cJSON_Delete(j);
    j = parse("{\"m\": 3}");
    CHECK(options_from_json(k_demo, &d, j, "top", "c.yaml") && err_has("'top.m' must be a mapping"), "%s", ld_last_error());
    cJSON_Delete(j);
    CHECK(options_from_json(k_demo, &d, NULL, "top", "c.yaml") == 0, "a section not given keeps the defaults");
    CHECK(options_set_text(&k_demo[1], &d, "x") && err_has("--m is a section of a config file"), "%s", ld_last_error());
    static const OptionSpec k_req[] = {{"a", OPT_INT, offsetof(Demo, a), 0, 5, NULL, NULL, "needed", NULL, 1}, {NULL}};
    j = parse("{}");
    CHECK(options_from_json(k_req, &d, j, "top", "c.yaml") && err_has("c.yaml: missing 'top.a'"), "a required key: %s", ld_last_error());
    cJSON_Delete(j);
    j = parse("{\"a\": null}");
    CHECK(options_from_json(k_req, &d, j, "top", "c.yaml") && err_has("c.yaml: missing 'top.a'"), "a required key given as null");
    cJSON_Delete(j);
}

int main(void) {
    test_sections();
    test_defaults_and_text();
    test_config();
    test_empty_and_null();
    test_checks();
    test_help();
    return test_finish("test_options");
}
