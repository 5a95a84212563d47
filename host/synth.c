#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decontam.h"
#include "dedup.h"
#include "text.h"
#include "util.h"

int synth_is_targeted(const SynthTarget *t) { return t && t->probed && t->failed; }

static char *targeted_prompt(const SynthConfig *cfg, const Record *seed, const SynthTarget *t, int call) {
    static const char *fmt =
        "You are writing training data for a small language model that must learn one task.\n\n"
        "Task: %s\n\n"
        "Here is one example of the task.\n<instruction>\n%s\n</instruction>\n<response>\n%s\n</response>\n\n"
        "The small model answered this example with:\n<student_answer>\n%.2000s\n</student_answer>\n"
        "What was wrong with its answer: %s\n\n"
        "Write %d new examples of the same task that teach exactly what the small model got wrong here. Each must be "
        "similar to the example in context and structure but different in content from it and from each other, with a "
        "correct response in the same style as the example response. Keep each instruction concise.\n\n"
        "Reply with only this JSON object and nothing else:\n"
        "{\"contents\": [{\"instruction\": \"...\", \"response\": \"...\"}]}\n\n"
        "(round %d, request %d, targeted)";
    char *answer = ld_utf8_prefix(t->answer ? t->answer : "", 2000), *critique = ld_utf8_prefix(t->critique ? t->critique : "", 2000);
    size_t n =
        strlen(fmt) + strlen(cfg->task) + strlen(seed->instruction) + strlen(seed->response) + strlen(answer) + strlen(critique) + 160;
    char *s = ld_xmalloc(n);
    snprintf(s, n, fmt, cfg->task, seed->instruction, seed->response, answer, critique, cfg->pairs_per_call, cfg->round, call);
    free(answer), free(critique);
    return s;
}

char *synth_prompt(const SynthConfig *cfg, const Record *seed, const SynthTarget *target, int call, int reask) {
    if (synth_is_targeted(target)) {
        char *base = targeted_prompt(cfg, seed, target, call);
        if (!reask) return base;
        size_t n = strlen(base) + 96;
        char *s = ld_xrealloc(base, n);
        snprintf(s + strlen(s), 96, " (retry %d: the previous reply did not follow the JSON contract)", reask);
        return s;
    }
    static const char *fmt =
        "You are writing training data for a small language model that must learn one task.\n\n"
        "Task: %s\n\n"
        "Here is one example of the task.\n<instruction>\n%s\n</instruction>\n<response>\n%s\n</response>\n\n"
        "Write %d new examples of the same task. Each must be similar to the example in context and structure "
        "but different in content from it and from each other. Keep each instruction concise; make each "
        "response detailed, accurate and in the same style as the example response.\n\n"
        "Reply with only this JSON object and nothing else:\n"
        "{\"contents\": [{\"instruction\": \"...\", \"response\": \"...\"}]}\n\n"
        "(round %d, request %d)";
    size_t n = strlen(fmt) + strlen(cfg->task) + strlen(seed->instruction) + strlen(seed->response) + 160;
    char *s = ld_xmalloc(n);
    int k = snprintf(s, n, fmt, cfg->task, seed->instruction, seed->response, cfg->pairs_per_call, cfg->round, call);
    if (reask) snprintf(s + k, n - (size_t)k, " (retry %d: the previous reply did not follow the JSON contract)", reask);
    return s;
}

// The reply contract as a JSON Schema, for providers with schema-constrained output (validated here anyway).
static const char *k_synth_schema =
    "{\"type\":\"object\",\"properties\":{\"contents\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
    "\"properties\":{\"instruction\":{\"type\":\"string\"},\"response\":{\"type\":\"string\"}},"
    "\"required\":[\"instruction\",\"response\"]}}},\"required\":[\"contents\"]}";

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

// A seeded shuffle of n indices (Fisher-Yates, as every earlier build drew it: a resumed run asks the same requests).
static void shuffle(int *perm, int n, uint64_t *s) {
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(xorshift(s) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

typedef struct {
    double key;
    int index;
} Keyed;

static int cmp_keyed(const void *a, const void *b) {
    double x = ((const Keyed *)a)->key, y = ((const Keyed *)b)->key;
    return x < y ? -1 : x > y;
}

// The failing probe items, worst first by a weighted draw without replacement (Efraimidis-Spirakis keys
// -log(u)/w with w = 1 - score + 0.05): a seed answered wrong in every sample comes before one half right.
static int failing_order(const SynthTarget *t, int n_seeds, uint64_t *s, int *out) {
    Keyed *k = ld_xmalloc(sizeof(Keyed) * (size_t)(n_seeds + 1));
    int n = 0;
    for (int i = 0; i < n_seeds; i++)
        if (synth_is_targeted(&t[i])) {
            double u = ((double)(xorshift(s) >> 11) + 0.5) / 9007199254740992.0;  // in (0, 1)
            k[n++] = (Keyed){-log(u) / (1.0 - t[i].score + 0.05), i};
        }
    qsort(k, (size_t)n, sizeof(Keyed), cmp_keyed);
    for (int i = 0; i < n; i++) out[i] = k[i].index;
    free(k);
    return n;
}

// Seed order for a round, and which calls are targeted. Uniform: a seeded shuffle, drawn again each time the calls
// cycle through all seeds, so a seed is used again only after every other one has been. Targeted: a share of the
// calls (synth.target_share, spread evenly) cycles through the probe's failing seeds, worst first, each shown with
// the student's answer and critique; the rest are drawn as uniform ones, so the data stays as varied as the seeds.
// With nothing failing on the probe, every call is uniform.
static int *seed_order(const SynthConfig *cfg, int n_seeds, int calls, const SynthTarget **call_target) {
    int *order = ld_xmalloc(sizeof(int) * (size_t)(calls + 1));
    int *perm = ld_xmalloc(sizeof(int) * (size_t)n_seeds), *fail = ld_xmalloc(sizeof(int) * (size_t)(n_seeds + 1));
    uint64_t s = ((uint64_t)cfg->seed << 32) ^ (uint64_t)cfg->round ^ 0x9e3779b97f4a7c15ull, ts = s ^ 0x5bd1e995ull;
    int n_fail = cfg->targets ? failing_order(cfg->targets, n_seeds, &ts, fail) : 0, u = 0, t = 0;
    for (int c = 0; c < calls; c++) {
        call_target[c] = NULL;
        int aimed = n_fail && (int)floor((c + 1) * cfg->target_share) > (int)floor(c * cfg->target_share);
        if (aimed) {
            order[c] = fail[t++ % n_fail];
            call_target[c] = &cfg->targets[order[c]];
            continue;
        }
        if (u % n_seeds == 0) shuffle(perm, n_seeds, &s);
        order[c] = perm[u++ % n_seeds];
    }
    free(perm), free(fail);
    return order;
}

int synth_aims(const SynthConfig *cfg, int n_seeds, int *aim) {
    const SynthTarget **call_target = ld_xcalloc((size_t)cfg->calls + 1, sizeof(SynthTarget *));
    int *order = seed_order(cfg, n_seeds, cfg->calls, call_target), n = 0;
    for (int c = 0; c < cfg->calls; c++) n += (aim[c] = call_target[c] ? order[c] : -1) >= 0;
    free(order), free(call_target);
    return n;
}

static cJSON *find_contents(const char *text) {
    for (const char *p = strchr(text, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithOpts(p, &end, 0);
        if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "contents"))) return o;
        cJSON_Delete(o);
        if (end && end > p) p = end - 1;
    }
    return NULL;
}

static char *pair_text(const char *instruction, const char *response) {
    size_t n = strlen(instruction) + strlen(response) + 2;
    char *s = ld_xmalloc(n);
    snprintf(s, n, "%s\n%s", instruction, response);
    return s;
}

static cJSON *dropped(int call, int idx, const char *seed_id, const char *reason, const char *instruction, const char *response) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "call", call);
    if (idx >= 0) cJSON_AddNumberToObject(d, "pair", idx);
    cJSON_AddStringToObject(d, "seed_id", seed_id);
    cJSON_AddStringToObject(d, "reason", reason);
    if (instruction) cJSON_AddStringToObject(d, "instruction", instruction);
    if (response) cJSON_AddStringToObject(d, "response", response);
    return d;
}

typedef struct {
    double t0;
    int done, total;
} Progress;

static void on_done(void *ctx, LlmJob *job) {
    (void)job;
    Progress *p = ctx;
    p->done++;
    if (p->done == p->total || p->done % 10 == 0) {
        double dt = ld_time_s() - p->t0;
        fprintf(stderr, "synth: %d/%d calls, %.1f calls/s\n", p->done, p->total, dt > 0 ? p->done / dt : 0);
    }
}

static int follows_contract(const LlmJob *j) {
    cJSON *o = j->status == JOB_OK ? find_contents(j->reply.text) : NULL;
    cJSON_Delete(o);
    return o != NULL;
}

// The calls whose reply was JSON but not the contract, asked once more with a retry marker: a distinct request,
// so neither this run nor a rerun is answered with the cached off-contract reply again.
static int reask_off_contract(const ProviderConfig *p, const ClientLimits *l, LlmCache *cache, const SynthConfig *cfg, const Records *seeds,
                              const int *order, const SynthTarget *const *call_target, LlmJob *jobs, LlmMessage *msgs, char **prompts,
                              int calls, int reask, SynthSummary *sum) {
    int *which = ld_xmalloc(sizeof(int) * (size_t)calls), nw = 0;
    for (int c = 0; c < calls; c++)
        if (jobs[c].status == JOB_OK && !follows_contract(&jobs[c])) which[nw++] = c;
    LlmJob *again = ld_xcalloc((size_t)nw + 1, sizeof(LlmJob));
    for (int q = 0; q < nw; q++) {
        int c = which[q];
        free(prompts[c]);
        prompts[c] = synth_prompt(cfg, &seeds->v[order[c]], call_target[c], c, reask);
        msgs[c] = (LlmMessage){"user", prompts[c]};
        again[q].req = jobs[c].req;
    }
    ClientStats st;
    ClientLimits next = client_limits_continue(l, &sum->client);
    int rc = nw ? llm_run(p, &next, cache, again, nw, NULL, NULL, &st) : 0;
    if (nw && rc == 0) {
        fprintf(stderr, "synth: %d replies off the {\"contents\"} contract asked again (retry %d)\n", nw, reask);
        client_stats_add(&sum->client, &st);
        sum->reasked += nw;
        for (int q = 0; q < nw; q++) {
            llm_job_clear(&jobs[which[q]]);
            jobs[which[q]] = again[q];
        }
    } else {
        for (int q = 0; q < nw; q++) llm_job_clear(&again[q]);
    }
    free(again), free(which);
    return rc;
}

// Why a returned pair is unusable as data (heap), or NULL.
static char *invalid_reason(const SynthConfig *cfg, const char *is, const char *rs) {
    char why[300] = "";
    if (!is || !rs)
        snprintf(why, sizeof why, "invalid: instruction and response must be strings");
    else if (!*is || strspn(is, " \t\r\n") == strlen(is))
        snprintf(why, sizeof why, "invalid: empty instruction");
    else if (!*rs || strspn(rs, " \t\r\n") == strlen(rs))
        snprintf(why, sizeof why, "invalid: empty response");
    else if ((int)strlen(is) > cfg->max_instruction_chars)
        snprintf(why, sizeof why, "invalid: instruction of %zu characters (limit %d)", strlen(is), cfg->max_instruction_chars);
    else if ((int)strlen(rs) > cfg->max_response_chars)
        snprintf(why, sizeof why, "invalid: response of %zu characters (limit %d)", strlen(rs), cfg->max_response_chars);
    return why[0] ? ld_xstrdup(why) : NULL;
}

typedef struct {
    int call, idx;
    const char *is, *rs;  // point into the reply's JSON
    char *why;  // dropped, and why (heap), or NULL
} Candidate;

// The task's checks that need no reference, on every well-formed pair at once (one run of a checker command). A
// checker that fails (crashes, runs past its limit, writes garbage) is an error naming it that stops the stage: it
// decided nothing, so neither keeping nor dropping the pairs would be true. 0, or -1.
static int verify_candidates(const SynthConfig *cfg, Candidate *cand, int n, SynthSummary *sum) {
    if (!cfg->check || !task_check_verifies(cfg->check)) return 0;
    CheckItem *items = ld_xcalloc((size_t)n + 1, sizeof(CheckItem));
    int *which = ld_xcalloc((size_t)n + 1, sizeof(int)), m = 0;
    char **ids = ld_xcalloc((size_t)n + 1, sizeof(char *));
    for (int q = 0; q < n; q++) {
        if (cand[q].why) continue;
        char id[48];
        snprintf(id, sizeof id, "c%04d-%d", cand[q].call, cand[q].idx);
        ids[m] = ld_xstrdup(id);
        items[m] = (CheckItem){ids[m], cand[q].is, NULL, cand[q].rs};
        which[m++] = q;
    }
    int *ok = ld_xcalloc((size_t)m + 1, sizeof(int));
    char **why = ld_xcalloc((size_t)m + 1, sizeof(char *));
    int rc = task_check_verify(cfg->check, items, m, ok, why);
    if (rc) {
        char err[600];
        snprintf(err, sizeof err, "%s", ld_last_error());
        ld_set_error("synthesis: the task's checker could not verify %d synthetic pairs (round %d): %s", m, cfg->round, err);
    }
    for (int i = 0; i < m; i++) {
        if (!rc && !ok[i])
            cand[which[i]].why = why[i], sum->failed_check++;
        else
            free(why[i]);
        free(ids[i]);
    }
    free(items), free(which), free(ids), free(ok), free(why);
    return rc;
}

// A kept pair as a chat record, with its lineage (the seed, and for a targeted call the probe item and critique).
static cJSON *synth_record(const SynthConfig *cfg, const char *id, const char *is, const char *rs, const char *model, const char *seed_id,
                           const char *prompt_hash, const char *created, const SynthTarget *target) {
    int round = cfg->round;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", id);
    cJSON *m = cJSON_AddArrayToObject(r, "messages"), *u = cJSON_CreateObject(), *a = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", is);
    cJSON_AddStringToObject(a, "role", "assistant");
    cJSON_AddStringToObject(a, "content", rs);
    cJSON_AddItemToArray(m, u);
    cJSON_AddItemToArray(m, a);
    cJSON_AddStringToObject(r, "source", "synth");
    cJSON_AddStringToObject(r, "generator", model);
    cJSON_AddStringToObject(r, "seed_id", seed_id);
    cJSON_AddNumberToObject(r, "round", round);
    cJSON_AddStringToObject(r, "prompt_hash", prompt_hash);
    cJSON_AddStringToObject(r, "created", created ? created : "");
    if (target) {  // the probe item this pair was written to fix, and what was wrong there
        cJSON_AddStringToObject(r, "probe_id", seed_id);
        cJSON_AddNumberToObject(r, "probe_score", target->score);
        char *critique = ld_xstrdup(target->critique ? target->critique : "");
        if (cfg->privacy) {  // it quotes the reference and the judge's reasons: synthetic data never holds the originals
            ScrubMap *m = scrub_map_new();
            char *t = scrub_text(cfg->privacy, critique, m, NULL);
            scrub_map_free(m);
            free(critique);
            critique = t ? t : ld_xstrdup("");
        }
        char *excerpt = ld_utf8_prefix(critique, 300);
        free(critique);
        cJSON_AddStringToObject(r, "critique", excerpt);
        free(excerpt);
    }
    return r;
}

int synth_run(const ProviderConfig *p, const ClientLimits *l, LlmCache *cache, const SynthConfig *cfg, const Records *seeds,
              const Records *prior, int n_prior, const Records *test, const char *out_path, const char *dropped_path, SynthSummary *sum) {
    memset(sum, 0, sizeof *sum);
    int calls = cfg->calls;
    const SynthTarget **call_target = ld_xcalloc((size_t)calls + 1, sizeof(SynthTarget *));
    int *order = seed_order(cfg, seeds->n, calls, call_target);
    LlmJob *jobs = ld_xcalloc((size_t)calls, sizeof(LlmJob));
    LlmMessage *msgs = ld_xcalloc((size_t)calls, sizeof(LlmMessage));
    char **prompts = ld_xcalloc((size_t)calls, sizeof(char *));
    for (int c = 0; c < calls; c++) {
        prompts[c] = synth_prompt(cfg, &seeds->v[order[c]], call_target[c], c, 0);
        sum->targeted_calls += call_target[c] != NULL;
        msgs[c] = (LlmMessage){"user", prompts[c]};
        // a scrubbed seed's placeholders stay in the pairs: the team's originals never enter synthetic data
        jobs[c].req =
            (LlmRequest){.messages = &msgs[c], .n_messages = 1, .json_mode = 1, .json_schema = k_synth_schema, .keep_placeholders = 1};
    }
    Progress pg = {ld_time_s(), 0, calls};
    int rc = llm_run(p, l, cache, jobs, calls, on_done, &pg, &sum->client);
    for (int reask = 1; rc == 0 && reask <= cfg->max_reask; reask++)
        rc = reask_off_contract(p, l, cache, cfg, seeds, order, call_target, jobs, msgs, prompts, calls, reask, sum);
    if (rc == 0) {
        Dedup *dd = dedup_new(cfg->dedup_threshold, 3, 128);
        for (int i = 0; i < seeds->n; i++) {  // all earlier data: the seeds and every prior round
            char *t = pair_text(seeds->v[i].instruction, seeds->v[i].response ? seeds->v[i].response : "");
            dedup_add(dd, t, -1 - i);
            free(t);
        }
        for (int f = 0; f < n_prior; f++)
            for (int i = 0; i < prior[f].n; i++) {
                char *t = pair_text(prior[f].v[i].instruction, prior[f].v[i].response ? prior[f].v[i].response : "");
                dedup_add(dd, t, -1000000 - i);
                free(t);
            }
        Decontam *dc = decontam_new(cfg->decontam_ngram);
        for (int i = 0; i < test->n; i++) {
            char *t = pair_text(test->v[i].instruction, test->v[i].response ? test->v[i].response : "");
            decontam_add_reference(dc, t, i);
            free(t);
        }
        cJSON **kept = NULL, **drop = NULL, **objs = ld_xcalloc((size_t)calls + 1, sizeof(cJSON *));
        int n_kept = 0, n_drop = 0, n_cand = 0;
        char **kept_ids = NULL;
        Candidate *cand = NULL;
        for (int c = 0; c < calls; c++) {  // every pair returned, checked for form; failed calls dropped whole
            const Record *seed = &seeds->v[order[c]];
            LlmJob *j = &jobs[c];
            if (j->status != JOB_OK) {
                sum->calls_failed++;
                drop = ld_xrealloc(drop, sizeof(cJSON *) * (size_t)(n_drop + 1));
                char why[600];
                snprintf(why, sizeof why, "call failed: %s", j->error ? j->error : "unknown");
                drop[n_drop++] = dropped(c, -1, seed->id, why, NULL, NULL);
                continue;
            }
            cJSON *obj = objs[c] = find_contents(j->reply.text);
            if (!obj) {
                sum->calls_failed++;
                drop = ld_xrealloc(drop, sizeof(cJSON *) * (size_t)(n_drop + 1));
                drop[n_drop++] = dropped(c, -1, seed->id, "reply without the {\"contents\": [...]} contract", NULL, NULL);
                continue;
            }
            sum->calls_ok++;
            int idx = 0;
            for (cJSON *e = cJSON_GetObjectItemCaseSensitive(obj, "contents")->child; e; e = e->next, idx++) {
                sum->returned++;
                cand = ld_xrealloc(cand, sizeof(Candidate) * (size_t)(n_cand + 1));
                Candidate *k = &cand[n_cand++];
                *k = (Candidate){c, idx, NULL, NULL, NULL};
                const cJSON *ins = cJSON_GetObjectItemCaseSensitive(e, "instruction"),
                            *res = cJSON_GetObjectItemCaseSensitive(e, "response");
                k->is = cJSON_IsString(ins) ? ins->valuestring : NULL, k->rs = cJSON_IsString(res) ? res->valuestring : NULL;
                k->why = invalid_reason(cfg, k->is, k->rs);
                sum->invalid += k->why != NULL;
            }
        }
        rc = verify_candidates(cfg, cand, n_cand, sum);
        for (int q = 0; rc && q < n_cand; q++) free(cand[q].why);  // nothing is kept, nor written
        for (int q = 0; !rc && q < n_cand; q++) {
            Candidate *k = &cand[q];
            int c = k->call;
            const Record *seed = &seeds->v[order[c]];
            const SynthTarget *tg = call_target[c];
            char why[300] = "";
            if (k->why) {
                snprintf(why, sizeof why, "%s", k->why);
            } else {
                char *t = pair_text(k->is, k->rs);
                DedupResult dr = dedup_check(dd, t);
                int ref;
                double ov = decontam_overlap(dc, t, &ref);
                const char *dup_of = dr.match_id >= 0          ? kept_ids[dr.match_id]
                                     : dr.match_id <= -1000000 ? "earlier round"
                                     : dr.match_id < 0         ? seeds->v[-1 - dr.match_id].id
                                                               : "";
                if (dr.verdict == DEDUP_EXACT) {
                    snprintf(why, sizeof why, "duplicate of %s (exact after normalisation)", dup_of);
                    sum->exact_dup++;
                } else if (dr.verdict == DEDUP_NEAR) {
                    snprintf(why, sizeof why, "near-duplicate of %s (Jaccard %.2f >= %.2f)", dup_of, dr.jaccard, cfg->dedup_threshold);
                    sum->near_dup++;
                } else if (ov >= cfg->decontam_threshold) {
                    snprintf(why, sizeof why, "contaminated: %.0f%% of its %d-grams are in test record %s", 100 * ov, cfg->decontam_ngram,
                             test->v[ref].id);
                    sum->contaminated++;
                } else {
                    char id[96];
                    snprintf(id, sizeof id, "synth-r%02d-c%04d-%d", cfg->round, c, k->idx);
                    const char *prompt_part[] = {prompts[c]};
                    char *prompt_hash = text_sha256_hex(prompt_part, 1);
                    char *is = cfg->surrogates ? scrub_surrogates(k->is, id) : ld_xstrdup(k->is);
                    char *rs = cfg->surrogates ? scrub_surrogates(k->rs, id) : ld_xstrdup(k->rs);
                    cJSON *r = synth_record(cfg, id, is, rs, p->model, seed->id, prompt_hash, jobs[c].reply.received_at, tg);
                    free(is), free(rs);
                    free(prompt_hash);
                    dedup_add(dd, t, n_kept);
                    kept = ld_xrealloc(kept, sizeof(cJSON *) * (size_t)(n_kept + 1));
                    kept_ids = ld_xrealloc(kept_ids, sizeof(char *) * (size_t)(n_kept + 1));
                    kept_ids[n_kept] = ld_xstrdup(id);
                    kept[n_kept++] = r;
                    sum->kept++;
                }
                free(t);
            }
            if (why[0]) {
                drop = ld_xrealloc(drop, sizeof(cJSON *) * (size_t)(n_drop + 1));
                drop[n_drop++] = dropped(c, k->idx, seed->id, why, k->is, k->rs);
            }
            free(k->why);
        }
        for (int c = 0; c < calls; c++) cJSON_Delete(objs[c]);
        free(objs), free(cand);
        if (!rc && (jsonl_write_atomic(out_path, kept, n_kept) || jsonl_write_atomic(dropped_path, drop, n_drop))) rc = -1;
        for (int i = 0; i < n_kept; i++) cJSON_Delete(kept[i]), free(kept_ids[i]);
        for (int i = 0; i < n_drop; i++) cJSON_Delete(drop[i]);
        free(kept), free(kept_ids), free(drop);
        dedup_free(dd);
        decontam_free(dc);
    }
    for (int c = 0; c < calls; c++) {
        llm_job_clear(&jobs[c]);
        free(prompts[c]);
    }
    free(jobs), free(msgs), free(prompts), free(order), free(call_target);
    return rc;
}
