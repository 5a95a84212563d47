#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define FIELD(dst, o, T) ((T *)((char *)(dst) + (o)->offset))

void options_defaults(const OptionSpec *spec, void *dst) {
    for (const OptionSpec *o = spec; o->key; o++) {
        if (o->type == OPT_SECTION)
            options_defaults(o->sub, dst);
        else if (o->type == OPT_MAP || o->type == OPT_LIST || o->type == OPT_VALUE)
            *FIELD(dst, o, const cJSON *) = NULL;
        else if (o->type == OPT_STR || o->type == OPT_CHOICE)
            *FIELD(dst, o, const char *) = o->def;
        else if (o->type == OPT_NUM)
            *FIELD(dst, o, double) = o->def ? strtod(o->def, NULL) : 0;
        else
            *FIELD(dst, o, int) = o->def ? atoi(o->def) : 0;
    }
}

// "--tokens-per-step" names the key "tokens_per_step"
static int flag_is(const char *flag, const char *key) {
    if (strncmp(flag, "--", 2)) return 0;
    for (flag += 2; *flag && *key; flag++, key++)
        if (*flag != (*key == '_' ? '-' : *key)) return 0;
    return !*flag && !*key;
}

const OptionSpec *options_find_flag(const OptionSpec *spec, const char *flag) {
    for (const OptionSpec *o = spec; o->key; o++)
        if (flag_is(flag, o->key)) return o;
    return NULL;
}

static int choice_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *c = choices; c && *c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && !strncmp(c, v, n)) return 1;
        c = bar ? bar + 1 : NULL;
    }
    return 0;
}

// name: how messages call the option ("--rank", or "run.yaml: 'student.train.rank'")
static int set_number(const OptionSpec *o, void *dst, double v, const char *name) {
    if (!(v >= o->min && v <= o->max) || (o->type == OPT_INT && v != floor(v))) {
        ld_set_error("%s must be %s in [%g, %g], not %g", name, o->type == OPT_INT ? "a whole number" : "a number", o->min, o->max, v);
        return -1;
    }
    if (o->type == OPT_INT)
        *FIELD(dst, o, int) = (int)v;
    else
        *FIELD(dst, o, double) = v;
    return 0;
}

static int set_string(const OptionSpec *o, void *dst, const char *v, const char *name) {
    if (o->type == OPT_CHOICE && !choice_ok(o->choices, v)) {
        ld_set_error("%s must be one of %s, not '%s'", name, o->choices, v);
        return -1;
    }
    if (o->type == OPT_STR && !*v && o->required) {
        ld_set_error("%s must not be empty", name);
        return -1;
    }
    *FIELD(dst, o, const char *) = o->type == OPT_STR && !*v ? o->def : v;  // "" means "not given"
    return 0;
}

int options_set_text(const OptionSpec *o, void *dst, const char *text) {
    char name[80];
    snprintf(name, sizeof name, "--%s", o->key);
    for (char *p = name; *p; p++) *p = *p == '_' ? '-' : *p;
    if (o->type == OPT_MAP || o->type == OPT_LIST || o->type == OPT_VALUE || o->type == OPT_SECTION) {
        ld_set_error("%s is a section of a config file, not a command-line option", name);
        return -1;
    }
    if (o->type == OPT_STR || o->type == OPT_CHOICE) return set_string(o, dst, text, name);
    if (o->type == OPT_BOOL) {
        int yes = !strcmp(text, "true") || !strcmp(text, "1"), no = !strcmp(text, "false") || !strcmp(text, "0");
        if (!yes && !no) {
            ld_set_error("%s must be true or false, not '%s'", name, text);
            return -1;
        }
        *FIELD(dst, o, int) = yes;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno) {
        ld_set_error("%s must be a number, not '%s'", name, text);
        return -1;
    }
    return set_number(o, dst, v, name);
}

static int set_json(const OptionSpec *o, void *dst, const cJSON *v, const char *name) {
    const char *want = NULL;
    if (o->type == OPT_BOOL && !cJSON_IsBool(v)) want = "true or false";
    else if ((o->type == OPT_STR || o->type == OPT_CHOICE) && !cJSON_IsString(v)) want = "a string";
    else if ((o->type == OPT_INT || o->type == OPT_NUM) && !cJSON_IsNumber(v)) want = "a number";
    else if (o->type == OPT_MAP && !cJSON_IsObject(v)) want = "a mapping";
    else if (o->type == OPT_LIST && !cJSON_IsArray(v)) want = "a list";
    if (want) {
        ld_set_error("%s must be %s", name, want);
        return -1;
    }
    if (o->type == OPT_BOOL) *FIELD(dst, o, int) = cJSON_IsTrue(v);
    else if (o->type == OPT_MAP || o->type == OPT_LIST || o->type == OPT_VALUE) *FIELD(dst, o, const cJSON *) = v;
    else if (o->type == OPT_STR || o->type == OPT_CHOICE) return set_string(o, dst, v->valuestring, name);
    else return set_number(o, dst, v->valuedouble, name);
    return 0;
}

static const OptionSpec *find_key(const OptionSpec *spec, const char *key) {
    for (const OptionSpec *o = spec; o->key; o++)
        if (!strcmp(o->key, key)) return o;
    return NULL;
}

static void unknown_key(const OptionSpec *spec, const char *file, const char *section, const char *key) {
    char known[1024] = "";
    for (const OptionSpec *k = spec; k->key; k++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", k == spec ? "" : ", ", k->key);
    ld_set_error("%s: unknown key '%s%s%s' (known: %s)", file, section, *section ? "." : "", key, known);
}

int options_from_json(const OptionSpec *spec, void *dst, const cJSON *obj, const char *section, const char *file) {
    if (!obj) return 0;
    if (!cJSON_IsObject(obj)) {
        ld_set_error("%s: '%s' must be a mapping", file, section);
        return -1;
    }
    for (const cJSON *c = obj->child; c; c = c->next) {
        const OptionSpec *o = find_key(spec, c->string);
        if (!o) {
            unknown_key(spec, file, section, c->string);
            return -1;
        }
        if (cJSON_IsNull(c)) continue;  // `key:` with nothing after it: the default
        char path[256], name[320];
        snprintf(path, sizeof path, "%s%s%s", section, *section ? "." : "", o->key);
        snprintf(name, sizeof name, "%s: '%s'", file, path);
        if (o->type == OPT_SECTION ? options_from_json(o->sub, dst, c, path, file) : set_json(o, dst, c, name)) return -1;
    }
    for (const OptionSpec *o = spec; o->key; o++)
        if (o->required && (!cJSON_GetObjectItemCaseSensitive(obj, o->key) || cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, o->key)))) {
            ld_set_error("%s: missing '%s%s%s'", file, section, *section ? "." : "", o->key);
            return -1;
        }
    return 0;
}

void options_help(const OptionSpec *spec, FILE *out) {
    for (const OptionSpec *o = spec; o->key; o++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", o->key);
        for (char *p = flag; *p; p++) *p = *p == '_' ? '-' : *p;
        if (o->type == OPT_MAP || o->type == OPT_LIST || o->type == OPT_VALUE || o->type == OPT_SECTION) continue;  // config sections have no flag
        const char *arg = o->type == OPT_BOOL ? "" : o->type == OPT_CHOICE ? o->choices : o->type == OPT_STR ? "TEXT" : "N";
        char head[128];
        snprintf(head, sizeof head, "%s %s", flag, arg);
        fprintf(out, "  %-34s %s", head, o->help);
        if (o->def && *o->def && o->type != OPT_BOOL) fprintf(out, " (default %s)", o->def);
        fputc('\n', out);
    }
}
