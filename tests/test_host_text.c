// The service side's text machinery on hand-made cases: dedup (exact and near, just above and below the
// threshold), decontamination, deterministic metrics against rouge-score / sacrebleu, judge-reply parsing
// and score statistics.
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "decontam.h"
#include "dedup.h"
#include "judge.h"
#include "judge_stage.h"
#include "metrics.h"
#include "records.h"
#include "test_util.h"
#include "text.h"
#include "util.h"

static void check_normalize(void) {
    char *a = text_normalize("  Caf\xC3\xA9   au\tLAIT \n"), *b = text_normalize("cafe\xCC\x81 au lait");
    CHECK(!strcmp(a, b) && !strcmp(a, "caf\xC3\xA9 au lait"), "normalisation: '%s' vs '%s'", a, b);
    free(a), free(b);
}

// Word lists with a known shingle Jaccard: n shared words then a differing tail.
static void check_dedup(void) {
    Dedup *d = dedup_new(0.8, 1, 128);  // 1-word shingles: Jaccard is simple to construct exactly
    dedup_add(d, "alpha beta gamma delta epsilon zeta eta theta iota kappa", 1);
    dedup_add(d, "Convert the date 3 May 2024 to ISO format", 2);
    DedupResult r = dedup_check(d, "  convert THE date 3 may 2024 to iso   format ");
    CHECK(r.verdict == DEDUP_EXACT && r.match_id == 2, "exact duplicate after normalisation not found (%d)", r.verdict);
    // 9 of 11 distinct words shared: J = 9/11 = 0.818 >= 0.8 -> near duplicate
    r = dedup_check(d, "alpha beta gamma delta epsilon zeta eta theta iota lambda");
    CHECK(r.verdict == DEDUP_NEAR && r.match_id == 1 && fabs(r.jaccard - 9.0 / 11) < 1e-9, "J=0.818 not near (%d, %.3f)", r.verdict,
          r.jaccard);
    // 8 of 12 shared: J = 0.667 < 0.8 -> unique
    r = dedup_check(d, "alpha beta gamma delta epsilon zeta eta theta mu nu");
    CHECK(r.verdict == DEDUP_UNIQUE, "J=0.667 flagged (%d, %.3f)", r.verdict, r.jaccard);
    // exactly at the threshold: 8 shared of 10 -> J = 0.8 counts as a duplicate
    Dedup *e = dedup_new(0.8, 1, 128);
    dedup_add(e, "a1 a2 a3 a4 a5 a6 a7 a8 a9", 7);
    r = dedup_check(e, "a1 a2 a3 a4 a5 a6 a7 a8 b1");
    CHECK(r.verdict == DEDUP_NEAR && fabs(r.jaccard - 0.8) < 1e-9, "J=0.8 at threshold: %d %.3f", r.verdict, r.jaccard);
    dedup_free(e);
    // many records: every planted near-duplicate found, no false positives among unrelated ones
    Dedup *f = dedup_new(0.7, 3, 128);
    char buf[512];
    for (int i = 0; i < 500; i++) {
        snprintf(buf, sizeof buf, "record %d talks about topic %d with words w%d x%d y%d z%d and more filler text here", i, i * 7, i, i + 1,
                 i * 3, i * 5);
        dedup_add(f, buf, i);
    }
    int found = 0, false_pos = 0;
    for (int i = 0; i < 500; i += 10) {
        snprintf(buf, sizeof buf, "record %d talks about topic %d with words w%d x%d y%d z%d and more filler text there", i, i * 7, i,
                 i + 1, i * 3, i * 5);
        r = dedup_check(f, buf);
        found += r.verdict == DEDUP_NEAR && r.match_id == i;
        snprintf(buf, sizeof buf, "an unrelated sentence number %d about cooking pasta with garlic and olive oil", i);
        false_pos += dedup_check(f, buf).verdict != DEDUP_UNIQUE;
    }
    CHECK(found == 50 && false_pos == 0, "LSH: %d/50 near-duplicates found, %d false positives", found, false_pos);
    printf("dedup: exact, near (J 0.818 / 0.8 / 0.667 vs threshold 0.8) and 50/50 planted near-duplicates among 500\n");
    dedup_free(f);
    dedup_free(d);
}

static void check_decontam(void) {
    Decontam *d = decontam_new(4);
    decontam_add_reference(d, "What is the capital of France? The capital of France is Paris.", 10);
    decontam_add_reference(d, "Summarise the meeting notes about the quarterly budget review.", 11);
    int ref;
    double o = decontam_overlap(d, "what is the capital of france? the capital of france is paris.", &ref);
    CHECK(fabs(o - 1.0) < 1e-9 && ref == 10, "verbatim test record: overlap %.3f ref %d", o, ref);
    o = decontam_overlap(d, "Please summarise the meeting notes about the quarterly budget review for me.", &ref);
    CHECK(o > 0.5 && ref == 11, "paraphrase with the test text inside: overlap %.3f ref %d", o, ref);
    o = decontam_overlap(d, "Write a haiku about autumn leaves falling on a quiet pond.", &ref);
    CHECK(o == 0 && ref == -1, "unrelated text: overlap %.3f", o);
    decontam_free(d);
}

static void check_metrics(void) {
    CHECK(metric_exact_match(" 2024-05-03\n", "2024-05-03"), "exact match ignores surrounding whitespace");
    CHECK(!metric_exact_match("2024-05-04", "2024-05-03"), "exact match");
    char p[1024];
    snprintf(p, sizeof p, "%s/metrics.jsonl", LD_FIXTURES);
    char *fx = test_read(p);
    int n = 0;
    for (char *line = strtok(fx, "\n"); line; line = strtok(NULL, "\n"), n++) {
        cJSON *r = cJSON_Parse(line);
        const char *c = cJSON_GetObjectItem(r, "candidate")->valuestring, *ref = cJSON_GetObjectItem(r, "reference")->valuestring;
        double rl = metric_rouge_l(c, ref), cf = metric_chrf(c, ref);
        double want_rl = cJSON_GetObjectItem(r, "rouge_l")->valuedouble, want_cf = cJSON_GetObjectItem(r, "chrf")->valuedouble;
        CHECK(fabs(rl - want_rl) < 1e-9, "ROUGE-L('%s', '%s') = %.6f, rouge-score %.6f", c, ref, rl, want_rl);
        CHECK(fabs(cf - want_cf) < 1e-6, "chrF('%s', '%s') = %.6f, sacrebleu %.6f", c, ref, cf, want_cf);
        cJSON_Delete(r);
    }
    printf("metrics: %d pairs match rouge-score and sacrebleu\n", n);
    free(fx);
}

static void check_judge(void) {
    struct {
        const char *reply;
        int ok;
        double sim, prec;
    } cases[] = {
        {"{\"similarity_assessment\": {\"score\": 85, \"reason\": \"close\"}, \"precision_assessment\": {\"score\": 90, \"reason\": "
         "\"ok\"}}",
         1, 85, 90},
        {"Here is my grading:\n```json\n{\"similarity_assessment\": {\"score\": \"85.5\", \"reason\": \"x\"},\n \"precision_assessment\": "
         "{\"score\": \"70/100\", \"reason\": \"y\"}}\n```\nHope it helps.",
         1, 85.5, 70},
        {"{\"note\": {\"a\": 1}} then {\"similarity_assessment\": {\"score\": 1}, \"precision_assessment\": {\"score\": 100}}", 1, 1, 100},
        {"{\"similarity_assessment\": {\"score\": 150}, \"precision_assessment\": {\"score\": 90}}", 0, 0, 0},
        {"{\"similarity_assessment\": {\"score\": 0}, \"precision_assessment\": {\"score\": 90}}", 0, 0, 0},
        {"{\"similarity_assessment\": {\"score\": \"high\"}, \"precision_assessment\": {\"score\": 90}}", 0, 0, 0},
        {"I would give it 85 out of 100.", 0, 0, 0},
        {"{\"similarity_assessment\": {\"score\": 85", 0, 0, 0},
        {"", 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        JudgeScores s;
        char err[256];
        int rc = judge_parse(cases[i].reply, &s, err, sizeof err);
        CHECK((rc == 0) == cases[i].ok, "judge case %zu: rc %d (%s)", i, rc, err);
        if (rc == 0 && cases[i].ok)
            CHECK(s.similarity == cases[i].sim && s.precision == cases[i].prec, "judge case %zu: %g %g", i, s.similarity, s.precision);
        if (rc != 0) CHECK(err[0] != 0, "judge case %zu: no reason", i);
        judge_scores_free(&s);
    }
    char *prompt = judge_prompt("Convert 3 May 2024", "2024-05-03", "2024-05-03");
    CHECK(strstr(prompt, "similarity_assessment") && strstr(prompt, "Convert 3 May 2024"), "judge prompt");
    free(prompt);
    double v[] = {90, 40, NAN, 70, 60, NAN};
    ScoreStats st = score_stats(v, 6);
    CHECK(st.n == 4 && st.n_invalid == 2, "stats counts %d %d", st.n, st.n_invalid);
    CHECK(fabs(st.mean - 65) < 1e-12 && fabs(st.median - 65) < 1e-12, "mean %g median %g", st.mean, st.median);
    CHECK(fabs(st.std - sqrt(((25 * 25) + (25 * 25) + 25 + 25) / 3.0)) < 1e-9, "std %g", st.std);
    CHECK(fabs(st.share_ge50 - 0.75) < 1e-12 && fabs(st.share_ge70 - 0.5) < 1e-12, "shares %g %g", st.share_ge50, st.share_ge70);
    double x[] = {10, 20, NAN, 40, 50}, y[] = {15, 25, 99, 45, 55}, z[] = {50, 40, 1, 20, 10}, mad;
    CHECK(fabs(score_agreement(x, y, 5, &mad) - 1) < 1e-12 && fabs(mad - 5) < 1e-12, "agreement: shifted scores r=1, mad 5");
    CHECK(fabs(score_agreement(x, z, 5, &mad) + 1) < 1e-12, "agreement: reversed scores r=-1");
    CHECK(isnan(score_agreement(x, y, 1, &mad)), "agreement of one pair is undefined");
    ScoreStats none = score_stats(v + 2, 1);
    CHECK(none.n == 0 && none.n_invalid == 1 && none.mean == 0, "all-invalid aggregate must not crash");
}

// Malformed record files: one line naming file:line and the problem.
static void check_records(void) {
    struct {
        const char *text, *needle;
    } cases[] = {
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n{oops\n",
         ":2: not a JSON object"},
        {"{\"messages\": [{\"role\": \"robot\", \"content\": \"q\"}]}\n", ":1: message 1: unknown role robot"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"\"}]}\n", ":1: message 1: empty content"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}\n", ":1: no assistant message"},
        {"\n\n", ": no records"},
        {"{\"id\": 3}\n", ":1: not a record"},
    };
    char path[128];
    snprintf(path, sizeof path, "/tmp/llamaduo-records-%d.jsonl", (int)getpid());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(cases[i].text, f);
        fclose(f);
        Records r;
        CHECK(records_read(path, 1, &r) != 0, "bad records case %zu accepted", i);
        CHECK(strstr(ld_last_error(), path) && strstr(ld_last_error(), cases[i].needle), "case %zu: '%s' lacks '%s'", i, ld_last_error(),
              cases[i].needle);
    }
    FILE *f = fopen(path, "w");
    fputs(
        "{\"id\": \"a\", \"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"q\"}, "
        "{\"role\": \"assistant\", \"content\": \"r\"}]}\n",
        f);
    fclose(f);
    Records r;
    CHECK(records_read(path, 1, &r) == 0 && r.n == 1 && !strcmp(r.v[0].instruction, "q") && !strcmp(r.v[0].response, "r") &&
              !strcmp(r.v[0].id, "a"),
          "a good record: %s", ld_last_error());
    records_free(&r);
    unlink(path);
}

// Several judges' files: one naming for `run` and `judge`, "-N" before the extension.
static void check_judge_files(void) {
    const char *cases[][3] = {{"runs/x/rounds/01/judge.jsonl", "runs/x/rounds/01/judge-0.jsonl", "0"},
                              {"runs/x/data/ceiling.metrics.json", "runs/x/data/ceiling.metrics-2.json", "2"},
                              {"out.d/judge", "out.d/judge-1", "1"}};
    for (int i = 0; i < 3; i++) {
        char *got = judge_file_for(cases[i][0], atoi(cases[i][2]));
        CHECK(!strcmp(got, cases[i][1]), "judge file for %s: %s, want %s", cases[i][0], got, cases[i][1]);
        free(got);
    }
}

int main(void) {
    check_judge_files();
    check_records();
    check_normalize();
    check_dedup();
    check_decontam();
    check_metrics();
    check_judge();
    return test_finish("test_host_text");
}
