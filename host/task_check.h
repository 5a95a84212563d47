// defines: the task's own checks of an answer (task.check): a label set (the answer must be one of the labels, and
// the reference's), a PCRE2 regex, JSON validity or a JSON schema, and a user checker command. Each gives a
// per-answer score in 0..1 beside the reference metrics, for pass rules; those that need no reference (labels,
// regex, JSON, and a command marked reference_free) also verify synthetic pairs before they join the training data.
#pragma once
#include <cjson/cJSON.h>

#include "checker_command.h"
#include "pass_rule.h"

typedef struct {
    // task.check, as configured (strings and lists point into the config's tree)
    const cJSON *labels;
    const char *regex;
    int json;
    const cJSON *json_schema;
    CheckerCommand command;
    int reference_free;  // the command decides a pair from the prompt alone
    // compiled by task_check_prepare
    void *re;  // pcre2_code
    struct JsonSchema *schema;
    char **label_norm;  // normalised labels
    int n_labels;
    int has[MEASURE_COUNT];  // which check measures are configured
} TaskCheck;

// Compiles what is configured; -1 with an error naming the task.check key in file.
int task_check_prepare(TaskCheck *c, const char *file);
void task_check_free(TaskCheck *c);
// 1 when some configured check can decide a pair without a reference (synthetic pairs are verified).
int task_check_verifies(const TaskCheck *c);

// Scores items with every configured check: out[m][i] for each measure m with c->has[m] (heap arrays; others NULL),
// reasons[i] (heap, may be NULL) the checker command's reasons. 0, or -1 with the checker's error.
int task_check_score(const TaskCheck *c, const CheckItem *items, int n, double *out[MEASURE_COUNT], char ***reasons);
// The checks that need no reference, on items whose reference is NULL: ok[i] = 1 when every one passed, else
// why[i] (heap) names the failed check. 0, or -1 with the checker's error.
int task_check_verify(const TaskCheck *c, const CheckItem *items, int n, int *ok, char **why);
