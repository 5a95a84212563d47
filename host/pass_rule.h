// defines: the loop's pass rule (judge.pass) over any measure of the answers — the judge's similarity and precision
// (mean, median, share >= 50 / >= 70), the reference metrics (exact match, normalised exact match, ROUGE-L, chrF)
// and the task's own checks (label, regex, JSON validity or schema, a checker command). A rule is one condition
// ("exact_match >= 0.95"), a list of them (all must hold), or {all: [...]} / {any: [...]}, nested as deep as
// wanted. Judge scores are on the judge's 1-100 scale; every other measure is a share in 0..1 ("95%" reads 0.95).
#pragma once
#include <cjson/cJSON.h>

typedef enum {
    MEASURE_SIMILARITY,
    MEASURE_PRECISION,
    MEASURE_EXACT_MATCH,
    MEASURE_NORMALIZED_EXACT_MATCH,
    MEASURE_ROUGE_L,
    MEASURE_CHRF,
    MEASURE_LABEL,
    MEASURE_REGEX,
    MEASURE_JSON_VALID,
    MEASURE_JSON_SCHEMA,
    MEASURE_CHECKER,
    MEASURE_COUNT
} Measure;

typedef enum { FROM_JUDGE, FROM_REFERENCE, FROM_CHECK } MeasureSource;

typedef struct {
    const char *name;  // as written in rules and in metrics.json
    MeasureSource source;
    const char *check_key;  // FROM_CHECK: the task.check key it needs
} MeasureInfo;

extern const MeasureInfo k_measures[MEASURE_COUNT];

typedef enum { JUDGE_LLM, JUDGE_METRIC, JUDGE_BOTH } JudgeMethod;
typedef enum { STAT_MEAN, STAT_MEDIAN, STAT_SHARE_GE50, STAT_SHARE_GE70 } MeasureStat;  // the latter three: judge only
typedef enum { OP_GE, OP_GT, OP_LE, OP_LT, OP_EQ } RuleOp;

typedef struct PassRule {
    int is_group, any;  // a group combines its parts with all (any = 0) or any
    struct PassRule *parts;
    int n_parts;
    Measure measure;  // a condition
    MeasureStat stat;
    RuleOp op;
    double value;
    char *text;  // as written (heap)
} PassRule;

// From judge.pass (NULL: the paper's rule, mean similarity and precision >= threshold). method says which measures
// are produced; has_check[m] whether task.check configures what measure m needs. -1 with an error naming
// 'judge.pass' in file and the reason.
int pass_rule_parse(const cJSON *pass, double threshold, JudgeMethod method, const int has_check[MEASURE_COUNT], const char *file,
                    PassRule *out);
void pass_rule_free(PassRule *r);
// 1 when the rule names measure m anywhere (the measures worth computing and targeting).
int pass_rule_uses(const PassRule *r, Measure m);

// The value a condition reads from a round's metrics.json (NaN when absent: the condition fails).
double pass_rule_value(const PassRule *cond, const cJSON *metrics);
// Evaluates the rule against metrics; *report gets {"combine", "conditions": [{"condition", "value", "held"}], "held"}
// (nested groups as "groups"). Returns 1 when it holds.
int pass_rule_eval(const PassRule *r, const cJSON *metrics, cJSON **report);
// A round's score on 0..100: the mean of the rule's measures (shares x 100), what improvement is judged by.
double pass_rule_score(const PassRule *r, const cJSON *metrics);
// One line, "exact_match >= 0.9 and (checker >= 0.95 or rouge_l >= 0.8)" (heap).
char *pass_rule_describe(const PassRule *r);
