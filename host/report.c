#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "pass_rule.h"
#include "records.h"
#include "run.h"
#include "run_paths.h"
#include "util.h"

// ---- what the report shows, gathered from the run directory ----------------------------------------------

typedef struct {
    int present;
    double sim_mean, sim_sd, sim_median, sim_ge50, sim_ge70;
    double prec_mean, prec_sd, prec_median, prec_ge50, prec_ge70;
    double exact, rouge, chrf;
    int pass, answers, unjudged;
} Scores;

typedef struct {
    int round, train_records, synth_kept, synth_returned, invalid, exact_dup, near_dup, contaminated, failed_check, synth_calls;
    Scores s;
} RoundInfo;

typedef struct {
    RoundInfo *rounds;
    int n_rounds, n_train, n_test;
    Scores ceiling;
    StageRow *rows;
    int n_rows;
    char *stop_reason;
    double api_usd_per_request, local_usd_per_request, infer_s_per_answer;
    int api_estimated;  // no ceiling run: the API price comes from the test set's lengths
} Facts;

static double num(const cJSON *o, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b) v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static Scores scores_from(const char *path) {
    Scores s = {0};
    cJSON *m = json_read_file(path);
    if (!m) return s;
    s.present = 1;
    s.sim_mean = num(m, "similarity", "mean"), s.sim_sd = num(m, "similarity", "std"), s.sim_median = num(m, "similarity", "median");
    s.sim_ge50 = num(m, "similarity", "share_ge50"), s.sim_ge70 = num(m, "similarity", "share_ge70");
    s.prec_mean = num(m, "precision", "mean"), s.prec_sd = num(m, "precision", "std"), s.prec_median = num(m, "precision", "median");
    s.prec_ge50 = num(m, "precision", "share_ge50"), s.prec_ge70 = num(m, "precision", "share_ge70");
    s.exact = num(m, "exact_match", NULL), s.rouge = num(m, "rouge_l", NULL), s.chrf = num(m, "chrf", NULL);
    s.pass = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "pass"));
    s.answers = (int)num(m, "answers", NULL), s.unjudged = (int)num(m, "unjudged_answers", NULL);
    cJSON_Delete(m);
    return s;
}

static const StageRow *find_row(const Facts *f, int round, const char *stage) {
    for (int i = 0; i < f->n_rows; i++)
        if (f->rows[i].round == round && !strcmp(f->rows[i].stage, stage)) return &f->rows[i];
    return NULL;
}

static double detail_num(const StageRow *row, const char *key) {
    if (!row) return NAN;
    cJSON *d = cJSON_Parse(row->detail);
    double v = num(d, key, NULL);
    cJSON_Delete(d);
    return v;
}

static void gather(Run *r, Facts *f) {
    memset(f, 0, sizeof *f);
    ledger_rows(r->ledger, &f->rows, &f->n_rows);
    f->stop_reason = ledger_get(r->ledger, "stop_reason");
    const StageRow *split = find_row(f, 0, "split");
    f->n_train = (int)detail_num(split, "train"), f->n_test = (int)detail_num(split, "test");
    char p[4096];
    snprintf(p, sizeof p, "%s/" RUN_CEILING_METRICS, r->dir);
    f->ceiling = scores_from(p);
    f->rounds = ld_xcalloc((size_t)r->max_rounds + 1, sizeof(RoundInfo));
    for (int t = 1; t <= r->max_rounds; t++) {
        RoundInfo *ri = &f->rounds[f->n_rounds];
        snprintf(p, sizeof p, "%s/" RUN_METRICS, r->dir, t);
        ri->s = scores_from(p);
        const StageRow *tr = find_row(f, t, "train"), *sy = find_row(f, t, "synth");
        if (!ri->s.present && !tr) continue;
        ri->round = t;
        ri->train_records = tr ? (int)detail_num(tr, "records") : 0;
        if (sy) {
            ri->synth_calls = (int)detail_num(sy, "calls"), ri->synth_returned = (int)detail_num(sy, "returned");
            ri->synth_kept = (int)detail_num(sy, "kept"), ri->invalid = (int)detail_num(sy, "invalid");
            ri->exact_dup = (int)detail_num(sy, "exact_duplicates"), ri->near_dup = (int)detail_num(sy, "near_duplicates");
            ri->contaminated = (int)detail_num(sy, "contaminated"), ri->failed_check = (int)detail_num(sy, "failed_check");
        }
        f->n_rounds++;
    }
    // break-even: what one request costs at the API vs on the local model
    const StageRow *ce = find_row(f, 0, "ceiling");
    double answers = detail_num(ce, "answers"), usd = detail_num(ce, "answer_usd");
    if (ce && !strcmp(ce->status, "done") && answers > 0 && !isnan(usd)) {  // a failed ceiling measured nothing
        f->api_usd_per_request = usd / answers;
    } else {  // no ceiling: the test prompts and references at 4 characters a token
        char tp[4096];
        snprintf(tp, sizeof tp, "%s/" RUN_COVERAGE_TEST, r->dir);
        Records t;
        double in = 0, out = 0;
        if (!records_read(tp, 1, &t)) {
            for (int i = 0; i < t.n; i++) in += strlen(t.v[i].instruction) / 4.0 + 8, out += strlen(t.v[i].response) / 4.0;
            if (t.n) in /= t.n, out /= t.n;
            records_free(&t);
        }
        f->api_usd_per_request = (in * r->st.service.price_in_per_mtok + out * r->st.service.price_out_per_mtok) / 1e6;
        f->api_estimated = 1;
    }
    for (int i = f->n_rows - 1; i >= 0; i--)
        if (!strcmp(f->rows[i].stage, "infer") && f->n_test > 0) {
            f->infer_s_per_answer = f->rows[i].seconds / (f->n_test * r->samples);
            break;
        }
    f->local_usd_per_request = r->local_usd_per_hour * f->infer_s_per_answer / 3600;
}

static void facts_free(Facts *f) {
    ledger_rows_free(f->rows, f->n_rows);
    free(f->rounds), free(f->stop_reason);
}

// ---- output helpers ---------------------------------------------------------------------------------------

typedef struct {
    char *s;
    size_t n, cap;
} Buf;

static void bp(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bp(Buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)need + 1 > b->cap) b->s = ld_xrealloc(b->s, b->cap = (b->n + (size_t)need + 1) * 2);
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

static void esc(Buf *b, const char *t, size_t max) {  // HTML text, cut at max bytes
    size_t i = 0;
    for (; t && t[i] && i < max; i++) {
        switch (t[i]) {
            case '<':
                bp(b, "&lt;");
                break;
            case '>':
                bp(b, "&gt;");
                break;
            case '&':
                bp(b, "&amp;");
                break;
            case '"':
                bp(b, "&quot;");
                break;
            default:
                bp(b, "%c", t[i]);
        }
    }
    if (t && t[i]) bp(b, "…");
}

static void md_cell(Buf *b, const char *t, size_t max) {  // one Markdown table cell: no pipes, no newlines
    size_t i = 0;
    for (; t && t[i] && i < max; i++) bp(b, "%s", t[i] == '|' ? "\\|" : t[i] == '\n' ? " " : (char[]){t[i], 0});
    if (t && t[i]) bp(b, "…");
}

static const char *pct(double x, char *buf) {
    if (isnan(x)) return "–";
    snprintf(buf, 16, "%.0f%%", 100 * x);
    return buf;
}

static const char *f1(double x, char *buf) {
    if (isnan(x)) return "–";
    snprintf(buf, 16, "%.1f", x);
    return buf;
}

// ---- charts (inline SVG) ----------------------------------------------------------------------------------

enum { W = 640, H = 260, L = 48, R = 16, T = 16, B = 40 };
static const char *const k_grey = "#7f7f7f";

static void axes(Buf *b, const char *id, const char *title, double ymax, const char *yfmt, int n_x, const int *labels) {
    bp(b,
       "<figure><svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" "
       "aria-label=\"%s\">\n",
       id, W, H, W, H, title);
    for (int k = 0; k <= 4; k++) {
        double y = T + (H - T - B) * (1 - k / 4.0);
        bp(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>", L, y, W - R, y);
        char lab[32];
        snprintf(lab, sizeof lab, yfmt, ymax * k / 4);
        bp(b, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n", L - 6, y + 4, lab);
    }
    for (int i = 0; i < n_x; i++) {
        double x = L + (W - L - R) * (i + 0.5) / n_x;
        bp(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">round %d</text>\n", x, H - B + 16, labels[i]);
    }
    bp(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", L, H - B, W - R, H - B);
}

static double ypos(double v, double ymax) { return T + (H - T - B) * (1 - (v > ymax ? ymax : v < 0 ? 0 : v) / ymax); }

static void legend(Buf *b, const char *const *names, const char *const *colors, int n) {
    for (int i = 0; i < n; i++)
        bp(b, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" font-size=\"11\">%s</text>\n",
           L + 8 + i * 150, H - 14, colors[i], L + 22 + i * 150, H - 5, names[i]);
}

// Grouped bars per round with optional whiskers (± sd) and horizontal reference lines.
static void bar_chart(Buf *b, const char *id, const char *title, const Facts *f, int n_series, const char *const *names,
                      const char *const *colors, double (*value)(const RoundInfo *, int), double (*spread)(const RoundInfo *, int),
                      double ymax, const char *yfmt, const double *refs, const char *const *ref_names, int n_refs) {
    int *labels = ld_xcalloc((size_t)f->n_rounds + 1, sizeof(int));
    for (int i = 0; i < f->n_rounds; i++) labels[i] = f->rounds[i].round;
    axes(b, id, title, ymax, yfmt, f->n_rounds, labels);
    double slot = (double)(W - L - R) / (f->n_rounds ? f->n_rounds : 1), bw = slot * 0.7 / n_series;
    for (int i = 0; i < f->n_rounds; i++)
        for (int k = 0; k < n_series; k++) {
            double v = value(&f->rounds[i], k);
            if (isnan(v)) continue;
            double x = L + slot * i + slot * 0.15 + bw * k, y = ypos(v, ymax);
            bp(b,
               "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>round %d, %s: "
               "%.3g</title></rect>\n",
               x, y, bw - 2, H - B - y, colors[k], f->rounds[i].round, names[k], v);
            double sd = spread ? spread(&f->rounds[i], k) : NAN;
            if (!isnan(sd) && sd > 0) {
                double cx = x + (bw - 2) / 2;
                bp(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#222\"/>\n", cx, ypos(v - sd, ymax), cx,
                   ypos(v + sd, ymax));
            }
        }
    for (int k = 0; k < n_refs; k++) {
        if (isnan(refs[k])) continue;
        double y = ypos(refs[k], ymax);
        bp(b,
           "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-dasharray=\"6 4\"/>"
           "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" fill=\"%s\">%s</text>\n",
           L, y, W - R, y, k == n_refs - 1 ? k_grey : colors[k % n_series], W - R - 2, y - 3,
           k == n_refs - 1 ? k_grey : colors[k % n_series], ref_names[k]);
    }
    legend(b, names, colors, n_series);
    bp(b, "</svg><figcaption>%s</figcaption></figure>\n", title);
    free(labels);
}

static double v_scores(const RoundInfo *r, int k) { return k ? r->s.prec_mean : r->s.sim_mean; }
static double v_sd(const RoundInfo *r, int k) { return k ? r->s.prec_sd : r->s.sim_sd; }
static double v_shares(const RoundInfo *r, int k) {
    return k == 0 ? r->s.sim_ge50 : k == 1 ? r->s.sim_ge70 : k == 2 ? r->s.prec_ge50 : r->s.prec_ge70;
}
static double v_data(const RoundInfo *r, int k) { return k ? r->synth_kept : r->train_records; }

// ---- the pass rule per round, and what each round's synthesis aimed at ------------------------------------

typedef struct {
    const char *text;
    double value;
    int held;
} Condition;

static int leaf_conditions(const cJSON *rule, Condition *out, int n, int cap) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(rule, "condition");
    if (cJSON_IsString(c)) {
        if (n < cap)
            out[n] = (Condition){c->valuestring, num(rule, "value", NULL), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rule, "held"))};
        return n + 1;
    }
    for (const cJSON *e = cJSON_GetObjectItemCaseSensitive(rule, "conditions") ? cJSON_GetObjectItemCaseSensitive(rule, "conditions")->child
                                                                               : NULL;
         e; e = e->next)
        n = leaf_conditions(e, out, n, cap);
    return n;
}

static int round_conditions(Run *r, const char *fmt, int t, Condition *c, int cap, cJSON **keep) {
    char p[4096];
    snprintf(p, sizeof p, "%s/", r->dir);
    snprintf(p + strlen(p), sizeof p - strlen(p), fmt, t);
    *keep = json_read_file(p);
    return *keep ? leaf_conditions(cJSON_GetObjectItemCaseSensitive(*keep, "rule"), c, 0, cap) : 0;
}

static const char *value_text(double v, char *buf) {
    if (isnan(v)) return "not measured";
    snprintf(buf, 32, "%.3g", v);
    return buf;
}

static void rule_rows(Run *r, const Facts *f, Buf *h, Buf *m) {
    char *rule = pass_rule_describe(&r->st.rule);
    bp(h, "<h2>The pass rule</h2>\n<p><b>");
    esc(h, rule, 400);
    bp(h,
       "</b> (judge.method %s). Each condition's value per round, on the test set and on the probe of training records the "
       "round's adapter answered after it:</p>\n<table><tr><th>round</th><th>condition</th><th>test value</th><th>held</th>"
       "<th>probe value</th></tr>\n",
       r->st.judge_method);
    bp(m,
       "\n## The pass rule\n\n**%s** (judge.method %s)\n\n| round | condition | test value | held | probe value |\n| --- | --- | --- | --- "
       "| --- |\n",
       rule, r->st.judge_method);
    free(rule);
    for (int i = 0; i <= f->n_rounds; i++) {
        int t = i < f->n_rounds ? f->rounds[i].round : 0;
        Condition c[32], pc[32];
        cJSON *mj, *pj = NULL;
        int n = round_conditions(r, t ? RUN_METRICS : RUN_CEILING_METRICS, t, c, 32, &mj);
        int pn = t ? round_conditions(r, RUN_PROBE_METRICS, t, pc, 32, &pj) : 0;
        for (int k = 0; k < n && k < 32; k++) {
            char label[32], v[32], pv[32];
            snprintf(label, sizeof label, t ? "%d" : "service (ceiling)", t);
            const char *probe = k < pn ? value_text(pc[k].value, pv) : "";
            bp(h, "<tr><td>%s</td><td>", k ? "" : label);
            esc(h, c[k].text, 200);
            const char *value = value_text(c[k].value, v);
            bp(h, "</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", value, c[k].held ? "yes" : "no", probe);
            bp(m, "| %s | %s | %s | %s | %s |\n", k ? "" : label, c[k].text, value, c[k].held ? "yes" : "no", probe);
        }
        cJSON_Delete(mj), cJSON_Delete(pj);
    }
    bp(h, "</table>\n");
}

// The round's kept pairs that a targeted call wrote, every one, each with the probe item it came from.
static void kept_lineage(cJSON **kept, int nk, Buf *h, Buf *m) {
    int shown = 0;
    for (int k = 0; k < nk; k++) {
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(kept[k], "probe_id"), *id = cJSON_GetObjectItemCaseSensitive(kept[k], "id"),
                    *msgs = cJSON_GetObjectItemCaseSensitive(kept[k], "messages");
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(msgs, 0), "content");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(msgs, 1), "content");
        if (!cJSON_IsString(pid) || !cJSON_IsString(id) || !cJSON_IsString(u) || !cJSON_IsString(a)) continue;
        if (!shown++) {
            bp(h,
               "<table class=\"samples\"><tr><th>synthetic pair kept</th><th>instruction</th><th>response</th><th>from probe "
               "item</th></tr>\n");
            bp(m, "\n| synthetic pair kept | instruction | response | from probe item |\n| --- | --- | --- | --- |\n");
        }
        bp(h, "<tr><td>");
        esc(h, id->valuestring, 80);
        bp(h, "</td><td>");
        esc(h, u->valuestring, 200);
        bp(h, "</td><td>");
        esc(h, a->valuestring, 200);
        bp(h, "</td><td>");
        esc(h, pid->valuestring, 80);
        bp(h, "</td></tr>\n");
        bp(m, "| ");
        md_cell(m, id->valuestring, 80);  // ids come from the data: a pipe in one would break the table
        bp(m, " | ");
        md_cell(m, u->valuestring, 100);
        bp(m, " | ");
        md_cell(m, a->valuestring, 100);
        bp(m, " | ");
        md_cell(m, pid->valuestring, 80);
        bp(m, " |\n");
    }
    if (shown) bp(h, "</table>\n");
}

// How often s is in the string array a, among its first upto entries (-1: all).
static int count_string(const cJSON *a, const char *s, int upto) {
    int n = 0, i = 0;
    for (const cJSON *e = a ? a->child : NULL; e && (upto < 0 || i < upto); e = e->next, i++)
        n += cJSON_IsString(e) && !strcmp(e->valuestring, s);
    return n;
}

// The probe's scoring of one item: its worst sample, the one a targeted call showed.
static const cJSON *probe_item(cJSON **items, int n, const char *id) {
    const cJSON *worst = NULL;
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(items[i], "id");
        if (cJSON_IsString(x) && !strcmp(x->valuestring, id) && (!worst || num(items[i], "score", NULL) < num(worst, "score", NULL)))
            worst = items[i];
    }
    return worst;
}

// How many of the kept pairs came from probe item id.
static int kept_from(cJSON **kept, int nk, const char *id) {
    int n = 0;
    for (int k = 0; k < nk; k++) {
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(kept[k], "probe_id");
        n += cJSON_IsString(pid) && !strcmp(pid->valuestring, id);
    }
    return n;
}

// A JSONL file's objects (none when it is missing or unreadable).
static cJSON **read_jsonl(const char *path, int *n) {
    cJSON **items = NULL;
    int *ln;
    *n = 0;
    if (ld_file_exists(path) && jsonl_read(path, &items, &ln, n, 1) == 0) free(ln);
    return items;
}

// Round t's synthesis: the probe items its targeted calls aimed at, as the ledger recorded them (in the order first
// aimed at: worst first), each with its score, the critique the calls showed, how many calls showed it and the pairs
// kept from it; then every kept pair a targeted call wrote, with the item it came from.
static void targeted_round(Run *r, const Facts *f, int t, Buf *h, Buf *m) {
    const StageRow *sy = find_row(f, t, "synth");
    if (!sy) return;
    cJSON *d = cJSON_Parse(sy->detail);
    const cJSON *aims = cJSON_GetObjectItemCaseSensitive(d, "targeted_seeds");
    if (!cJSON_GetArraySize(aims)) {
        bp(h, "<h3>Round %d</h3>\n<p>No call aimed at a probe item: every seed was drawn uniformly.</p>\n", t);
        bp(m, "\n### Round %d\n\nNo call aimed at a probe item: every seed was drawn uniformly.\n", t);
        cJSON_Delete(d);
        return;
    }
    char p[4096];
    int n, nk;
    snprintf(p, sizeof p, "%s/" RUN_PROBE_SCORES, r->dir, t - 1);
    cJSON **items = read_jsonl(p, &n);
    snprintf(p, sizeof p, "%s/" RUN_SYNTH, r->dir, t);
    cJSON **kept = read_jsonl(p, &nk);
    bp(h,
       "<h3>Round %d: %d of %d calls targeted at the round %d probe</h3>\n<table class=\"samples\"><tr><th>probe item</th>"
       "<th>score</th><th>calls</th><th>what was wrong (critique)</th><th>pairs kept from it</th></tr>\n",
       t, cJSON_GetArraySize(aims), (int)detail_num(sy, "calls"), t - 1);
    bp(m,
       "\n### Round %d: %d of %d calls targeted at the round %d probe\n\n| probe item | score | calls | critique | pairs kept |\n"
       "| --- | --- | --- | --- | --- |\n",
       t, cJSON_GetArraySize(aims), (int)detail_num(sy, "calls"), t - 1);
    int i = 0;
    for (const cJSON *e = aims->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e) || count_string(aims, e->valuestring, i)) continue;  // listed where first aimed at
        const char *id = e->valuestring;
        const cJSON *it = probe_item(items, n, id), *cr = cJSON_GetObjectItemCaseSensitive(it, "critique");
        const char *critique = cJSON_IsString(cr) ? cr->valuestring : "";
        char sc[32];
        snprintf(sc, sizeof sc, "%.2f", num(it, "score", NULL));
        int calls = count_string(aims, id, -1), from = kept_from(kept, nk, id);
        bp(h, "<tr><td>");
        esc(h, id, 80);
        bp(h, "</td><td>%s</td><td>%d</td><td>", sc, calls);
        esc(h, critique, 300);
        bp(h, "</td><td>%d</td></tr>\n", from);
        bp(m, "| ");
        md_cell(m, id, 80);
        bp(m, " | %s | %d | ", sc, calls);
        md_cell(m, critique, 200);
        bp(m, " | %d |\n", from);
    }
    bp(h, "</table>\n");
    kept_lineage(kept, nk, h, m);
    for (int k = 0; k < n; k++) cJSON_Delete(items[k]);
    for (int k = 0; k < nk; k++) cJSON_Delete(kept[k]);
    free(items), free(kept);
    cJSON_Delete(d);
}

static void targeting(Run *r, const Facts *f, Buf *h, Buf *m) {
    int any = 0;
    for (int i = 0; i < f->n_rounds && !any; i++) any = detail_num(find_row(f, f->rounds[i].round, "synth"), "targeted_calls") > 0;
    if (!any) return;
    bp(h,
       "<h2>What synthesis aimed at</h2>\n<p class=\"note\">After a round that did not pass, the student answered a probe of its "
       "own training records; the next round's targeted calls each showed one of its worst answers with the critique. Each kept "
       "pair names its probe item (probe_id) in data/round-NN.synth.jsonl.</p>\n");
    bp(m, "\n## What synthesis aimed at\n");
    for (int i = 0; i < f->n_rounds; i++)
        if (f->rounds[i].round >= 2) targeted_round(r, f, f->rounds[i].round, h, m);
}

// What the privacy scrubber replaced before any request left, by kind, summed over every stage's last run.
static void privacy_summary(Run *r, const Facts *f, Buf *h, Buf *m) {
    double total[PII_KINDS] = {0}, all = 0;
    for (int i = 0; i < f->n_rows; i++) {
        cJSON *d = cJSON_Parse(f->rows[i].detail);
        for (int k = 0; k < PII_KINDS; k++) {
            double v = num(cJSON_GetObjectItemCaseSensitive(d, "scrubbed"), k_pii_names[k], NULL);
            if (!isnan(v)) total[k] += v, all += v;
        }
        cJSON_Delete(d);
    }
    bp(h, "<h2>Privacy</h2>\n<p>");
    bp(m, "\n## Privacy\n\n");
    if (!r->st.scrubber) {
        bp(h, "Off (privacy.enabled, or no remote service): requests were sent as written.</p>\n");
        bp(m, "Off (privacy.enabled, or no remote service): requests were sent as written.\n");
        return;
    }
    bp(h, "Replaced with placeholders before sending: <b>%.0f</b> finds", all);
    bp(m, "Replaced with placeholders before sending: **%.0f** finds", all);
    for (int k = 0, first = 1; k < PII_KINDS; k++)
        if (total[k]) {
            bp(h, "%s%.0f %s", first ? " (" : ", ", total[k], k_pii_names[k]);
            bp(m, "%s%.0f %s", first ? " (" : ", ", total[k], k_pii_names[k]);
            first = 0;
        }
    bp(h, "%s. The mapping stayed in memory; synthetic pairs keep %s.</p>\n", all ? ")" : "",
       r->st.privacy.surrogates ? "realistic stand-ins" : "the placeholders");
    bp(m, "%s. The mapping stayed in memory; synthetic pairs keep %s.\n", all ? ")" : "",
       r->st.privacy.surrogates ? "realistic stand-ins" : "the placeholders");
}

// What one service's dollars above are: the batch price or the listed one.
static void batch_line(Buf *h, Buf *m, const char *role, const ProviderConfig *p) {
    bp(h, "<p>Requests to <b>");
    esc(h, p->model, 200);
    if (p->batch)
        bp(h,
           "</b> (%s) went through the provider's batch API: their dollars above are at the batch price, %.0f%% of the listed "
           "one ($%g / $%g per million prompt / completion tokens).</p>\n",
           role, 100 * p->batch_price_factor, p->price_in_per_mtok, p->price_out_per_mtok);
    else
        bp(h,
           "</b> (%s) were sent one at a time: their dollars above are at the listed price ($%g / $%g per million prompt / "
           "completion tokens).</p>\n",
           role, p->price_in_per_mtok, p->price_out_per_mtok);
    if (p->batch)
        bp(m, "\nRequests to %s (%s) went through the batch API: their dollars are at the batch price, %.0f%% of the listed one.\n",
           p->model, role, 100 * p->batch_price_factor);
    else
        bp(m, "\nRequests to %s (%s) were sent one at a time: their dollars are at the listed price.\n", p->model, role);
}

// Which dollars above are at a batch price, said per service whenever any batched: the service's synthesis and
// ceiling answers and each judge's judgments, since a judge may batch when the service does not, or the other way.
static void batch_note(Run *r, Buf *h, Buf *m) {
    int judged = r->st.judge.method != JUDGE_METRIC, any = r->st.service.batch;
    for (int j = 0; judged && j < r->st.n_judges; j++) any |= r->st.judges[j].batch;
    if (!any) return;
    int own = judged && !r->st.judge_is_service;  // judges of their own, said apart
    batch_line(h, m, own || !judged ? "the service: synthesis and the ceiling's answers" : "the service: synthesis, answers and judging",
               &r->st.service);
    for (int j = 0; own && j < r->st.n_judges; j++) {
        char role[32] = "the judge";
        if (r->st.n_judges > 1) snprintf(role, sizeof role, "judge %d", j + 1);
        batch_line(h, m, role, &r->st.judges[j]);
    }
}

// ---- the report ---------------------------------------------------------------------------------------------

static void sample_answers(Run *r, const Facts *f, Buf *h, Buf *m) {
    char p[4096];
    snprintf(p, sizeof p, "%s/" RUN_COVERAGE_TEST, r->dir);
    Records test;
    if (records_read(p, 1, &test)) return;
    int last = f->n_rounds ? f->rounds[f->n_rounds - 1].round : 0;
    snprintf(p, sizeof p, "%s/" RUN_INFER, r->dir, last);
    cJSON **stu = NULL, **svc = NULL;
    int *ln, n_stu = 0, n_svc = 0;
    if (last && jsonl_read(p, &stu, &ln, &n_stu, 1) == 0) free(ln);
    snprintf(p, sizeof p, "%s/" RUN_CEILING_ANSWERS, r->dir);
    if (ld_file_exists(p) && jsonl_read(p, &svc, &ln, &n_svc, 1) == 0) free(ln);
    bp(h,
       "<h2>Sample answers (test prompts, round %d)</h2>\n<table class=\"samples\"><tr><th>prompt</th><th>reference</th>"
       "<th>student</th><th>service LLM</th></tr>\n",
       last);
    bp(m, "\n## Sample answers (test prompts, round %d)\n\n| prompt | reference | student | service LLM |\n| --- | --- | --- | --- |\n",
       last);
    for (int i = 0; i < test.n && i < 6; i++) {
        const char *sa = "", *va = "";
        for (int k = 0; k < n_stu; k++) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(stu[k], "id"), *s = cJSON_GetObjectItemCaseSensitive(stu[k], "sample");
            if (cJSON_IsString(id) && !strcmp(id->valuestring, test.v[i].id) && cJSON_IsNumber(s) && s->valueint == 0)
                sa = cJSON_GetObjectItemCaseSensitive(stu[k], "text")->valuestring;
        }
        for (int k = 0; k < n_svc; k++) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(svc[k], "id");
            if (cJSON_IsString(id) && !strcmp(id->valuestring, test.v[i].id))
                va = cJSON_GetObjectItemCaseSensitive(svc[k], "text")->valuestring;
        }
        const char *cells[] = {test.v[i].instruction, test.v[i].response, sa, va};
        bp(h, "<tr>");
        bp(m, "|");
        for (int c = 0; c < 4; c++) {
            bp(h, "<td>");
            esc(h, cells[c], 600);
            bp(h, "</td>");
            bp(m, " ");
            md_cell(m, cells[c], 160);
            bp(m, " |");
        }
        bp(h, "</tr>\n");
        bp(m, "\n");
    }
    bp(h, "</table>\n");
    for (int k = 0; k < n_stu; k++) cJSON_Delete(stu[k]);
    for (int k = 0; k < n_svc; k++) cJSON_Delete(svc[k]);
    free(stu), free(svc);
    records_free(&test);
}

static int write_text(const char *path, const Buf *b) {
    char *tmp;
    FILE *f = ld_atomic_open(path, &tmp);
    return f ? ld_atomic_commit(f, tmp, path, fwrite(b->s, 1, b->n, f) == b->n) : -1;
}

int report_write(Run *r, const char *html_path, const char *md_path) {
    Facts f;
    gather(r, &f);
    Buf h = {0}, m = {0};
    char a[16], b2[16], c[16], d[16], e[16], g[16];
    bp(&h,
       "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>llamaduo run %s</title>\n<style>\n"
       "body{font-family:system-ui,sans-serif;max-width:980px;margin:24px auto;padding:0 16px;color:#222}\n"
       "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;"
       "vertical-align:top}th{background:#f4f4f4}table.samples td{text-align:left;max-width:220px;white-space:pre-wrap}\n"
       "figure{margin:8px 0 24px}figcaption{font-size:13px;color:#555}.note{color:#555;font-size:14px}\n</style></head><body>\n",
       r->dir);
    bp(&h, "<h1>Migration report: %s</h1>\n<p>Student <b>", r->dir);
    esc(&h, r->student, 300);
    bp(&h, "</b>, service LLM <b>");
    esc(&h, r->st.service.model, 200);
    bp(&h, "</b>. Data: %d training seeds, %d held-out test prompts, %d answer(s) each. <b>", f.n_train, f.n_test, r->samples);
    esc(&h, f.stop_reason ? f.stop_reason : "The run has not finished.", 400);
    bp(&h, "</b></p>\n");
    bp(&m,
       "# Migration report: %s\n\nStudent **%s**, service LLM **%s**. Data: %d training seeds, %d held-out test prompts, %d answer(s) "
       "each. **%s**\n",
       r->dir, r->student, r->st.service.model, f.n_train, f.n_test, r->samples,
       f.stop_reason ? f.stop_reason : "The run has not finished.");

    // scores
    bp(&h, "<h2>Judge scores per round</h2>\n");
    static const char *const score_names[] = {"similarity", "precision"}, *score_colors[] = {"#1f77b4", "#ff7f0e"};
    double refs[] = {f.ceiling.present ? f.ceiling.sim_mean : NAN, f.ceiling.present ? f.ceiling.prec_mean : NAN, r->st.judge.threshold};
    const char *ref_names[] = {"service similarity (ceiling)", "service precision (ceiling)", "pass threshold"};
    bar_chart(&h, "chart-scores",
              "Mean judge scores (1–100) per round, whiskers ± 1 sd; dashed: the service LLM's own answers and the pass threshold", &f, 2,
              score_names, score_colors, v_scores, v_sd, 100, "%.0f", refs, ref_names, 3);
    static const char *const share_names[] = {"similarity ≥ 50", "similarity ≥ 70", "precision ≥ 50", "precision ≥ 70"};
    static const char *const share_colors[] = {"#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78"};
    bar_chart(&h, "chart-shares", "Share of answers scoring at least 50 and 70", &f, 4, share_names, share_colors, v_shares, NULL, 1,
              "%.2f", NULL, NULL, 0);
    bp(&h,
       "<table><tr><th>round</th><th>similarity mean</th><th>median</th><th>sd</th><th>≥50</th><th>≥70</th><th>precision mean</th>"
       "<th>median</th><th>sd</th><th>≥50</th><th>≥70</th><th>exact match</th><th>ROUGE-L</th><th>chrF</th><th>pass</th></tr>\n");
    bp(&m,
       "\n## Judge scores per round\n\n| round | similarity mean (sd) | ≥50 / ≥70 | precision mean (sd) | ≥50 / ≥70 | exact | ROUGE-L | "
       "chrF | pass |\n"
       "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int i = 0; i <= f.n_rounds; i++) {
        const Scores *s = i < f.n_rounds ? &f.rounds[i].s : &f.ceiling;
        if (!s->present) continue;
        char label[32];
        if (i < f.n_rounds)
            snprintf(label, sizeof label, "%d", f.rounds[i].round);
        else
            snprintf(label, sizeof label, "service (ceiling)");
        bp(&h, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>", label, f1(s->sim_mean, a), f1(s->sim_median, b2),
           f1(s->sim_sd, c), pct(s->sim_ge50, d), pct(s->sim_ge70, e));
        bp(&h, "<td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>", f1(s->prec_mean, a), f1(s->prec_median, b2), f1(s->prec_sd, c),
           pct(s->prec_ge50, d), pct(s->prec_ge70, e));
        bp(&h, "<td>%s</td><td>%.3f</td><td>%.3f</td><td>%s</td></tr>\n", pct(s->exact, g), s->rouge, s->chrf, s->pass ? "yes" : "no");
        bp(&m, "| %s | %s (%s) | %s / %s |", label, f1(s->sim_mean, a), f1(s->sim_sd, c), pct(s->sim_ge50, d), pct(s->sim_ge70, e));
        bp(&m, " %s (%s) | %s / %s | %s | %.3f | %.3f | %s |\n", f1(s->prec_mean, a), f1(s->prec_sd, c), pct(s->prec_ge50, d),
           pct(s->prec_ge70, e), pct(s->exact, g), s->rouge, s->chrf, s->pass ? "yes" : "no");
    }
    bp(&h, "</table>\n");
    if (f.ceiling.present && f.n_rounds && !isnan(f.ceiling.sim_mean) && f.ceiling.sim_mean > 0) {
        const Scores *s = &f.rounds[f.n_rounds - 1].s;
        bp(&h, "<p>The last round's student reaches %.0f%% of the service LLM's similarity and %.0f%% of its precision.</p>\n",
           100 * s->sim_mean / f.ceiling.sim_mean, 100 * s->prec_mean / f.ceiling.prec_mean);
        bp(&m, "\nThe last round's student reaches %.0f%% of the service LLM's similarity and %.0f%% of its precision.\n",
           100 * s->sim_mean / f.ceiling.sim_mean, 100 * s->prec_mean / f.ceiling.prec_mean);
    }

    // data
    bp(&h, "<h2>Data per round</h2>\n");
    static const char *const data_names[] = {"records trained on", "synthetic pairs kept this round"};
    static const char *const data_colors[] = {"#2ca02c", "#9467bd"};
    double dmax = 10;
    for (int i = 0; i < f.n_rounds; i++) dmax = fmax(dmax, fmax(f.rounds[i].train_records, f.rounds[i].synth_kept));
    dmax = ceil(dmax / 10) * 10;
    bar_chart(&h, "chart-data", "Training data per round", &f, 2, data_names, data_colors, v_data, NULL, dmax, "%.0f", NULL, NULL, 0);
    bp(&h,
       "<table><tr><th>round</th><th>trained on</th><th>synth calls</th><th>pairs returned</th><th>kept</th><th>invalid</th>"
       "<th>exact duplicates</th><th>near duplicates</th><th>contaminated (test overlap)</th><th>failed the task's checker</th></tr>\n");
    bp(&m,
       "\n## Data per round\n\n| round | trained on | synth calls | returned | kept | invalid | exact dup | near dup | contaminated | "
       "failed the checker |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int i = 0; i < f.n_rounds; i++) {
        const RoundInfo *ri = &f.rounds[i];
        bp(&h, "<tr><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td></tr>\n",
           ri->round, ri->train_records, ri->synth_calls, ri->synth_returned, ri->synth_kept, ri->invalid, ri->exact_dup, ri->near_dup,
           ri->contaminated, ri->failed_check);
        bp(&m, "| %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n", ri->round, ri->train_records, ri->synth_calls, ri->synth_returned,
           ri->synth_kept, ri->invalid, ri->exact_dup, ri->near_dup, ri->contaminated, ri->failed_check);
    }
    bp(&h, "</table><p class=\"note\">Every dropped pair is in data/round-NN.dropped.jsonl with its reason.</p>\n");
    rule_rows(r, &f, &h, &m);
    targeting(r, &f, &h, &m);

    // cost and time: what each stage's last run paid beside what it reused from the cache, which add up to what its
    // replies are worth (requests paid count the attempts sent, replies reused the jobs answered from the cache)
    bp(&h,
       "<h2>Tokens, dollars and time per stage</h2>\n<table><tr><th rowspan=\"2\">round</th><th rowspan=\"2\">stage</th>"
       "<th rowspan=\"2\">status</th><th rowspan=\"2\">seconds</th><th colspan=\"3\">paid now</th><th colspan=\"3\">reused from "
       "the cache</th></tr>\n<tr><th>requests</th><th>tokens (prompt + completion)</th><th>dollars</th><th>replies</th>"
       "<th>tokens (prompt + completion)</th><th>dollars</th></tr>\n");
    bp(&m,
       "\n## Tokens, dollars and time per stage\n\n| round | stage | status | seconds | paid now: requests | tokens (prompt + "
       "completion) | dollars | reused from the cache: replies | tokens (prompt + completion) | dollars |\n"
       "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    double usd = 0, svc_s = 0, stu_s = 0;
    long tok = 0;
    for (int i = 0; i < f.n_rows; i++) {
        const StageRow *w = &f.rows[i];
        long rp = w->prompt_tokens - w->new_prompt_tokens, rc = w->completion_tokens - w->new_completion_tokens;
        double ru = w->reused_usd;
        bp(&h,
           "<tr><td>%d</td><td>%s</td><td>%s</td><td>%.1f</td><td>%ld</td><td>%ld + %ld</td><td>$%.4f</td><td>%ld</td>"
           "<td>%ld + %ld</td><td>$%.4f</td></tr>\n",
           w->round, w->stage, w->status, w->seconds, w->requests, w->new_prompt_tokens, w->new_completion_tokens, w->new_usd,
           w->cache_hits, rp, rc, ru);
        bp(&m, "| %d | %s | %s | %.1f | %ld | %ld + %ld | $%.4f | %ld | %ld + %ld | $%.4f |\n", w->round, w->stage, w->status, w->seconds,
           w->requests, w->new_prompt_tokens, w->new_completion_tokens, w->new_usd, w->cache_hits, rp, rc, ru);
        usd += w->usd, tok += w->prompt_tokens + w->completion_tokens;
        if (!strcmp(w->stage, "train") || !strcmp(w->stage, "infer"))
            stu_s += w->seconds;
        else
            svc_s += w->seconds;
    }
    char cp[4096];
    snprintf(cp, sizeof cp, "%s/" RUN_CACHE, r->dir);
    LlmCache *cache = cache_open(cp);
    double paid = cache ? cache_total_cost(cache) : NAN;
    cache_close(cache);
    bp(&h,
       "</table>\n<p class=\"note\">Paid now: what the stage's last run sent to the service. Reused from the cache: replies "
       "paid for once before (by a run killed half-way, a rerun, the same judge prompt in a later round) and not paid again.</p>\n"
       "<p>Service LLM: %ld tokens in replies "
       "worth $%.4f; <b>$%.4f paid</b>. Compute: %.0f s training and inferring the student, %.0f s in service-LLM stages.</p>\n",
       tok, usd, paid, stu_s, svc_s);
    bp(&m,
       "\nService LLM: %ld tokens in replies worth $%.4f; $%.4f paid (each distinct request once). Compute: %.0f s training and "
       "inferring the student, %.0f s in service-LLM stages.\n",
       tok, usd, paid, stu_s, svc_s);
    batch_note(r, &h, &m);

    privacy_summary(r, &f, &h, &m);

    // break-even
    bp(&h, "<h2>Break-even</h2>\n");
    bp(&m, "\n## Break-even\n\n");
    char be[512];
    double diff = f.api_usd_per_request - f.local_usd_per_request;
    if (r->local_monthly_usd <= 0 && diff > 0)
        snprintf(be, sizeof be,
                 "With no fixed monthly cost for the local machine (report.local_monthly_usd), the local model is cheaper "
                 "from the first request.");
    else if (diff <= 0)
        snprintf(be, sizeof be, "At these prices the local model never costs less per request than the API.");
    else
        snprintf(be, sizeof be, "The local model costs less than the API from about %.0f requests per month.", r->local_monthly_usd / diff);
    bp(&h,
       "<p>One request at the API: $%.6f (%s); on the local model: $%.6f (%.3f s of inference at $%g/hour) plus $%g per month "
       "fixed. %s</p>\n",
       f.api_usd_per_request, f.api_estimated ? "estimated from the test set's lengths" : "measured on the test prompts",
       f.local_usd_per_request, f.infer_s_per_answer, r->local_usd_per_hour, r->local_monthly_usd, be);
    bp(&m, "One request at the API: $%.6f (%s); on the local model: $%.6f (%.3f s at $%g/hour) plus $%g per month fixed. %s\n",
       f.api_usd_per_request, f.api_estimated ? "estimated" : "measured", f.local_usd_per_request, f.infer_s_per_answer,
       r->local_usd_per_hour, r->local_monthly_usd, be);

    sample_answers(r, &f, &h, &m);
    bp(&h, "<p class=\"note\">Written by llamaduo from %s/ledger.sqlite and the run directory's files.</p>\n</body></html>\n", r->dir);
    int rc = write_text(html_path, &h) || write_text(md_path, &m) ? -1 : 0;
    free(h.s), free(m.s);
    facts_free(&f);
    return rc;
}
