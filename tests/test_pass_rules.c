// The pass rule (host/pass_rule.c), the task's checks (host/task_check.c) and a user checker command
// (host/checker_command.c): every kind of condition parsed, combined and evaluated; bad rules refused with the key
// and the reason; a checker that crashes, hangs, prints garbage or forgets an id is an error naming it, never a pass.
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checker_command.h"
#include "metrics.h"
#include "pass_rule.h"
#include "task_check.h"
#include "test_util.h"
#include "util.h"

static const int k_all_checks[MEASURE_COUNT] = {
    [MEASURE_LABEL] = 1, [MEASURE_REGEX] = 1, [MEASURE_JSON_VALID] = 1, [MEASURE_JSON_SCHEMA] = 1, [MEASURE_CHECKER] = 1};

static int parse(const char *json, JudgeMethod method, PassRule *r) {
    cJSON *v = strcmp(json, "null") ? cJSON_Parse(json) : NULL;  // null: judge.pass not given
    int rc = pass_rule_parse(v, 90, method, k_all_checks, "t.yaml", r);
    cJSON_Delete(v);
    return rc;
}

static int holds(const char *rule_json, JudgeMethod method, const char *metrics_json) {
    PassRule r;
    if (parse(rule_json, method, &r)) {
        fprintf(stderr, "parse %s: %s\n", rule_json, ld_last_error());
        return -1;
    }
    cJSON *m = cJSON_Parse(metrics_json), *rep;
    int h = pass_rule_eval(&r, m, &rep);
    cJSON_Delete(rep), cJSON_Delete(m);
    pass_rule_free(&r);
    return h;
}

static int refused(const char *rule_json, JudgeMethod method, const char *want) {
    PassRule r;
    if (!parse(rule_json, method, &r)) {
        pass_rule_free(&r);
        fprintf(stderr, "accepted: %s\n", rule_json);
        return 0;
    }
    if (!strstr(ld_last_error(), want) || !strstr(ld_last_error(), "t.yaml")) {
        fprintf(stderr, "message for %s: %s (wanted '%s')\n", rule_json, ld_last_error(), want);
        return 0;
    }
    return 1;
}

static void test_rules(void) {
    const char *m =
        "{\"similarity\":{\"mean\":91,\"median\":95,\"share_ge50\":0.9,\"share_ge70\":0.8},"
        "\"precision\":{\"mean\":88,\"median\":90,\"share_ge50\":1,\"share_ge70\":0.75},"
        "\"exact_match\":0.8,\"normalized_exact_match\":0.9,\"rouge_l\":0.85,\"chrf\":0.7,\"label\":1,"
        "\"regex\":0.95,\"json_valid\":1,\"json_schema\":0.5,\"checker\":0.6}";
    CHECK(holds("null", JUDGE_LLM, m) == 0, "the default rule: precision 88 < 90");
    CHECK(holds("\"similarity >= 90\"", JUDGE_LLM, m) == 1, "bare judge measure is its mean");
    CHECK(holds("\"similarity.median > 94\"", JUDGE_LLM, m) == 1, "median");
    CHECK(holds("\"precision.share_ge70 >= 0.8\"", JUDGE_LLM, m) == 0, "share_ge70 0.75");
    CHECK(holds("\"precision.share_ge50 == 100%\"", JUDGE_LLM, m) == 1, "percent share");
    CHECK(holds("\"exact_match >= 0.8\"", JUDGE_METRIC, m) == 1, "exact match at the bound");
    CHECK(holds("\"exact_match > 0.8\"", JUDGE_METRIC, m) == 0, "strictly greater");
    CHECK(holds("\"normalized_exact_match >= 90%\"", JUDGE_METRIC, m) == 1, "percent");
    CHECK(holds("\"rouge_l<0.9\"", JUDGE_METRIC, m) == 1, "no spaces, <");
    CHECK(holds("\"chrf <= 0.69\"", JUDGE_METRIC, m) == 0, "<=");
    CHECK(holds("[\"label >= 1\", \"regex >= 0.9\", \"json_valid >= 1\"]", JUDGE_METRIC, m) == 1, "a list: all");
    CHECK(holds("[\"label >= 1\", \"json_schema >= 0.9\"]", JUDGE_METRIC, m) == 0, "a list: one fails");
    CHECK(holds("{\"any\": [\"json_schema >= 0.9\", \"checker >= 0.6\"]}", JUDGE_METRIC, m) == 1, "any");
    CHECK(holds("{\"any\": [\"json_schema >= 0.9\", \"checker >= 0.7\"]}", JUDGE_METRIC, m) == 0, "any, none");
    CHECK(holds("{\"all\": [\"similarity >= 90\", {\"any\": [\"exact_match >= 0.9\", \"rouge_l >= 0.8\"]}]}", JUDGE_BOTH, m) == 1,
          "nested groups, both methods");
    CHECK(holds("\"checker >= 0.5\"", JUDGE_METRIC, "{\"exact_match\": 1}") == 0, "a measure absent from the metrics fails");

    PassRule r;
    cJSON *v = cJSON_Parse("{\"all\": [\"similarity >= 80\", {\"any\": [\"exact_match >= 0.9\", \"rouge_l >= 0.8\"]}]}");
    CHECK(pass_rule_parse(v, 90, JUDGE_BOTH, k_all_checks, "t.yaml", &r) == 0, "%s", ld_last_error());
    char *d = pass_rule_describe(&r);
    CHECK(!strcmp(d, "similarity >= 80 and (exact_match >= 0.9 or rouge_l >= 0.8)"), "describe: %s", d);
    free(d);
    CHECK(pass_rule_uses(&r, MEASURE_ROUGE_L) && !pass_rule_uses(&r, MEASURE_CHRF), "uses");
    cJSON *mj = cJSON_Parse(m), *rep;
    CHECK(fabs(pass_rule_score(&r, mj) - (91 + 80 + 85) / 3.0) < 1e-9, "score on 0..100: %g", pass_rule_score(&r, mj));
    pass_rule_eval(&r, mj, &rep);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "conditions"), 0);
    CHECK(cJSON_GetObjectItem(c0, "value")->valuedouble == 91 && cJSON_IsTrue(cJSON_GetObjectItem(c0, "held")), "report per condition");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(rep, "held")), "report held");
    cJSON_Delete(rep), cJSON_Delete(mj), cJSON_Delete(v);
    pass_rule_free(&r);

    CHECK(refused("\"exactmatch >= 0.9\"", JUDGE_METRIC, "'exactmatch' is not a measure"), "unknown measure");
    CHECK(refused("\"exact_match => 0.9\"", JUDGE_METRIC, "a comparison"), "bad operator");
    CHECK(refused("\"exact_match >= high\"", JUDGE_METRIC, "a number must follow"), "no number");
    CHECK(refused("\"exact_match >= 0.9 or so\"", JUDGE_METRIC, "unexpected 'or so'"), "trailing text");
    CHECK(refused("\"exact_match >= 95\"", JUDGE_METRIC, "out of range"), "a share above 1");
    CHECK(refused("\"similarity >= 0\"", JUDGE_LLM, "out of range"), "judge scale 1..100");
    CHECK(refused("\"exact_match.median >= 0.9\"", JUDGE_METRIC, "not a statistic"), "stat on a metric");
    CHECK(refused("\"similarity.p99 >= 90\"", JUDGE_LLM, "not a statistic"), "unknown stat");
    CHECK(refused("\"similarity >= 90\"", JUDGE_METRIC, "judge.method is metric"), "judge score without a judge");
    CHECK(refused("\"exact_match >= 0.9\"", JUDGE_LLM, "judge.method is llm"), "metric under method llm");
    CHECK(refused("null", JUDGE_METRIC, "must say what passes"), "metric needs a rule");
    CHECK(refused("[]", JUDGE_METRIC, "must be a condition"), "empty list");
    CHECK(refused("{\"most\": [\"exact_match >= 1\"]}", JUDGE_METRIC, "all or any"), "bad group key");
    CHECK(refused("[\"exact_match >= 1\", 3]", JUDGE_METRIC, "judge.pass[1]"), "the element is named");
    const int none[MEASURE_COUNT] = {0};
    v = cJSON_Parse("\"checker >= 0.9\"");
    CHECK(pass_rule_parse(v, 90, JUDGE_METRIC, none, "t.yaml", &r) == -1 && strstr(ld_last_error(), "task.check.command"),
          "a check measure needs its check: %s", ld_last_error());
    cJSON_Delete(v);
}

static const char *k_tmp;

static char *script(const char *name, const char *body) {
    char *p = ld_path_join(k_tmp, name);
    FILE *f = fopen(p, "w");
    fputs(body, f);
    fclose(f);
    size_t n = strlen(p) + 16;
    char *cmd = ld_xmalloc(n);
    snprintf(cmd, n, "python3 %s", p);
    free(p);
    return cmd;
}

static void test_checker_command(void) {
    const CheckItem items[] = {{"a#0", "2+2?", "4", "4"}, {"b#0", "3+3?", "6", "7"}, {"c#0", "x", NULL, "anything"}};
    double *s;
    char **why;
    setenv("OPENAI_API_KEY", "sk-secret-test", 1);
    char *ok = script("ok.py",
                      "import json, os, sys\n"
                      "for l in sys.stdin:\n"
                      "    r = json.loads(l)\n"
                      "    leak = any('secret' in v for v in os.environ.values())\n"
                      "    sc = 0.0 if leak else float(r['reference'] is not None and r['answer'] == r['reference'])\n"
                      "    print(json.dumps({'id': r['id'], 'score': sc, 'reason': 'leak' if leak else 'compared'}))\n");
    CheckerCommand c = {ok, 10};
    CHECK(checker_command_run(&c, items, 3, &s, &why) == 0, "%s", ld_last_error());
    CHECK(s && s[0] == 1 && s[1] == 0 && s[2] == 0, "scores %g %g %g (1 0 0: no secret in the checker's environment)", s ? s[0] : -1,
          s ? s[1] : -1, s ? s[2] : -1);
    CHECK(why && why[0] && !strcmp(why[0], "compared"), "reasons kept");
    free(s), checker_reasons_free(why, 3);

    struct {
        const char *name, *body, *want;
        double timeout;
    } bad[] = {
        {"crash.py", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "killed by signal 11", 10},
        {"exit.py", "import sys\nsys.stderr.write('cannot parse the rubric\\n')\nsys.exit(3)\n",
         "exited with status 3: cannot parse the rubric", 10},
        {"hang.py", "import time\ntime.sleep(30)\n", "ran past its 0.5 s limit", 0.5},
        {"garbage.py", "print('all good!')\n", "output line 1 is not", 10},
        {"missing.py", "import json, sys\nfor l in list(sys.stdin)[:2]:\n    print(json.dumps({'id': json.loads(l)['id'], 'score': 1}))\n",
         "gave no score for id 'c#0'", 10},
        {"range.py", "import json, sys\nfor l in sys.stdin:\n    print(json.dumps({'id': json.loads(l)['id'], 'score': 7}))\n",
         "outside 0..1", 10},
        {"unknown.py", "print('{\"id\": \"zzz\", \"score\": 1}')\n", "names id 'zzz'", 10},
        {"trailing.py", "print('{\"id\": \"a#0\", \"score\": 1}xyz')\n", "output line 1 is not", 10},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *cmd = script(bad[i].name, bad[i].body);
        CheckerCommand b = {cmd, bad[i].timeout};
        double t0 = ld_time_s();
        int rc = checker_command_run(&b, items, 3, &s, &why);
        CHECK(rc == -1 && strstr(ld_last_error(), bad[i].want) && strstr(ld_last_error(), cmd), "%s: rc %d, %s", bad[i].name, rc,
              ld_last_error());
        CHECK(ld_time_s() - t0 < 8, "%s: stopped within seconds", bad[i].name);
        CHECK(s == NULL, "%s: no scores", bad[i].name);
        free(cmd);
    }
    const CheckItem twice[] = {{"a", "p", NULL, "x"}, {"a", "q", NULL, "y"}};
    CHECK(checker_command_run(&c, twice, 2, &s, &why) == -1 && strstr(ld_last_error(), "given twice"), "duplicate ids");
    free(ok);
    unsetenv("OPENAI_API_KEY");
}

static void test_task_checks(void) {
    cJSON *labels = cJSON_Parse("[\"positive\", \"negative\"]");
    cJSON *schema = cJSON_Parse("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}},\"required\":[\"n\"]}");
    TaskCheck c = {.labels = labels, .regex = "^\\d{4}-\\d{2}-\\d{2}$", .json = 1, .json_schema = schema};
    CHECK(task_check_prepare(&c, "t.yaml") == 0, "%s", ld_last_error());
    const CheckItem items[] = {{"1", "p", "positive", " Positive\n"}, {"2", "p", "negative", "positive"},
                               {"3", "p", "neutral", "neutral"},      {"4", "p", "x", "2024-05-03"},
                               {"5", "p", "x", "{\"n\": 3}"},         {"6", "p", "x", "{\"n\": \"3\"}"}};
    double *s[MEASURE_COUNT];
    CHECK(task_check_score(&c, items, 6, s, NULL) == 0, "%s", ld_last_error());
    CHECK(s[MEASURE_LABEL][0] == 1 && s[MEASURE_LABEL][1] == 0 && s[MEASURE_LABEL][2] == 0, "labels: in the set and the right one");
    CHECK(s[MEASURE_REGEX][3] == 1 && s[MEASURE_REGEX][0] == 0, "regex");
    CHECK(s[MEASURE_JSON_VALID][4] == 1 && s[MEASURE_JSON_VALID][5] == 1 && s[MEASURE_JSON_VALID][3] == 0, "json validity");
    CHECK(s[MEASURE_JSON_SCHEMA][4] == 1 && s[MEASURE_JSON_SCHEMA][5] == 0, "json schema");
    CHECK(s[MEASURE_CHECKER] == NULL && s[MEASURE_EXACT_MATCH] == NULL, "only configured checks");
    for (int m = 0; m < MEASURE_COUNT; m++) free(s[m]);
    CHECK(task_check_verifies(&c), "labels, regex and JSON need no reference");
    task_check_free(&c);

    TaskCheck l = {.labels = labels};
    task_check_prepare(&l, "t.yaml");
    const CheckItem pairs[] = {{"a", "p", NULL, "negative"}, {"b", "p", NULL, "maybe"}};
    int ok[2];
    char *why[2];
    CHECK(task_check_verify(&l, pairs, 2, ok, why) == 0 && ok[0] && !ok[1] && strstr(why[1], "failed the task's checker"),
          "a synthetic pair outside the label set is refused");
    free(why[0]), free(why[1]);
    task_check_free(&l);

    TaskCheck bad = {.regex = "([0-9"};
    CHECK(task_check_prepare(&bad, "t.yaml") == -1 && strstr(ld_last_error(), "task.check.regex"), "bad regex: %s", ld_last_error());
    task_check_free(&bad);
    cJSON *bad_schema = cJSON_Parse("{\"type\":\"object\",\"patternProperties\":{}}");
    TaskCheck bs = {.json_schema = bad_schema};
    CHECK(task_check_prepare(&bs, "t.yaml") == -1 && strstr(ld_last_error(), "task.check.json_schema"), "bad schema: %s", ld_last_error());
    task_check_free(&bs);
    cJSON *twice = cJSON_Parse("{\"enum\":[\"a\",\"b\"],\"const\":\"c\"}");
    TaskCheck tw = {.json_schema = twice};
    CHECK(task_check_prepare(&tw, "t.yaml") == -1 && strstr(ld_last_error(), "enum or const once"), "enum and const together: %s",
          ld_last_error());
    task_check_free(&tw);
    cJSON_Delete(twice);
    cJSON *empty = cJSON_Parse("[]");
    TaskCheck el = {.labels = empty};
    CHECK(task_check_prepare(&el, "t.yaml") == -1 && strstr(ld_last_error(), "task.check.labels"), "empty labels");
    task_check_free(&el);
    cJSON_Delete(labels), cJSON_Delete(schema), cJSON_Delete(bad_schema), cJSON_Delete(empty);
}

static void test_metrics(void) {
    CHECK(metric_exact_match(" 2024-05-03\n", "2024-05-03"), "exact match ignores surrounding whitespace");
    CHECK(!metric_exact_match("Paris", "paris"), "exact match is case-sensitive");
    CHECK(metric_normalized_exact_match("The answer: Paris!", "the answer paris"), "normalised: case and punctuation aside");
    CHECK(!metric_normalized_exact_match("Paris, France", "Paris"), "normalised: the words must be the same");
}

int main(void) {
    char tmpl[] = "/tmp/llamaduo-rules-XXXXXX";
    k_tmp = mkdtemp(tmpl);
    test_rules();
    test_checker_command();
    test_task_checks();
    test_metrics();
    return test_finish("test_pass_rules");
}
