// defines: table-driven option schemas: each option once (key, type, range or choices, default, help), read from
// a command line's `--key value` and from a config's mapping (YAML through host/config.c, or JSON) with the same
// checks and messages, and turned into help text. A schema fills a plain C struct through field offsets. Strings and
// mappings are not copied: they point into the config's tree, argv or the schema's defaults, and live as long as
// those.
#pragma once
#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

typedef enum {
    OPT_INT,  // int, within [min, max]
    OPT_NUM,  // double, within [min, max]
    OPT_BOOL,  // int 0/1: a bare flag on the command line, true/false in a config
    OPT_STR,  // const char *, any text; "" means not given (the default, or NULL)
    OPT_CHOICE,  // const char *, one of choices ("a|b|c")
    OPT_MAP,  // const cJSON *: a mapping read by someone else (student.train)
    OPT_LIST,  // const cJSON *: a list read by someone else (judge.services)
    OPT_VALUE,  // const cJSON *: any value read by someone else (judge.pass: a string, a list or a mapping)
    OPT_SECTION,  // a nested mapping whose keys are the rows of sub (student.infer), into the same struct
} OptType;

typedef struct OptionSpec {
    const char *key;  // the config key (the flag is --key with '-' for '_')
    OptType type;
    size_t offset;  // of the field in the options struct
    double min, max;  // OPT_INT, OPT_NUM
    const char *def;  // the default as text; NULL: none (strings NULL, numbers 0)
    const char *choices;  // OPT_CHOICE
    const char *help;
    const struct OptionSpec *sub;  // OPT_SECTION
    int required;  // a config mapping that is given must hold it
} OptionSpec;

// spec[] ends with a {NULL} row. Every function returns 0, or -1 with an error naming the option and the source.
void options_defaults(const OptionSpec *spec, void *dst);
// The spec row whose flag is `flag` ("--tokens-per-step"), or NULL.
const OptionSpec *options_find_flag(const OptionSpec *spec, const char *flag);
// A command-line value for option o; messages name it by its flag.
int options_set_text(const OptionSpec *o, void *dst, const char *text);
// Every key of the mapping obj (section names it in messages, as 'section.key', file is the config's path);
// unknown keys are refused with the known ones listed; a key given as null (`key:` left empty) keeps its default.
// obj NULL: nothing given (the defaults stand).
int options_from_json(const OptionSpec *spec, void *dst, const cJSON *obj, const char *section, const char *file);
// `  --key VALUE   help (default D)` lines, one per option.
void options_help(const OptionSpec *spec, FILE *out);
