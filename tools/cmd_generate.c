// llamaduo generate: one prompt (streamed to stdout) or a JSONL batch (JSONL out) through batched decoding.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cuda_device.h"
#include "dist.h"
#include "records.h"
#include "util.h"

static const char *k_help =
    "usage: llamaduo generate --model PATH (--prompt TEXT | --input FILE.jsonl) [options]\n\n"
    "  --prompt TEXT           one prompt; the answer streams to stdout\n"
    "  --input FILE.jsonl      one request per line: {\"id\": .., \"prompt\": \"..\"} or {\"id\": .., \"messages\": [..]}\n"
    "                          (a trailing assistant message, such as a reference answer, is left out)\n"
    "  --output FILE.jsonl     where the answers go (default stdout): {\"id\", \"sample\", \"text\",\n"
    "                          \"finish_reason\", \"prompt_tokens\", \"completion_tokens\"}\n"
    "  --samples K             answers per prompt (default 1), sample k seeded as stream k\n"
    "  --ranks N               answer --input on N data-parallel ranks (mpirun; with --device cuda, one GPU each):\n"
    "                          the answers come out in input order, as one process writes them\n"
    "  --dist-timeout SECONDS  how long a rank waits for the others (default 300)\n"
    "  --dist-init METHOD      how ranks you start yourself meet: auto, mpi, tcp://HOST:PORT or file:PATH (as train's)\n";

typedef struct {
    char *id;  // JSON text of the request's id (any JSON value), or NULL
    int *ids;
    int n_ids;
} Prompt;

static void build_prompt(const Model *m, const ChatTemplate *ct, const GenOptions *o, cJSON *msgs, const char *text, Prompt *out,
                         const char *where) {
    if (o->raw && text) {
        out->n_ids = tok_encode(m->tok, text, strlen(text), TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &out->ids);
        return;
    }
    int n = msgs ? cJSON_GetArraySize(msgs) : 1 + (o->system != NULL);
    ChatMessage *cm = ld_xcalloc((size_t)n + 1, sizeof(ChatMessage));
    int k = 0;
    if (msgs) {
        for (cJSON *x = msgs->child; x; x = x->next) {
            cJSON *r = cJSON_GetObjectItemCaseSensitive(x, "role"), *c = cJSON_GetObjectItemCaseSensitive(x, "content");
            if (!cJSON_IsString(r) || !cJSON_IsString(c)) die("%s: each message needs string role and content", where);
            cm[k++] = (ChatMessage){r->valuestring, c->valuestring};
        }
        if (k && !strcmp(cm[k - 1].role, "assistant")) k--;  // the reference answer is not part of the prompt
        if (k == 0) die("%s: no messages before the answer", where);
    } else {
        if (o->system) cm[k++] = (ChatMessage){"system", o->system};
        cm[k++] = (ChatMessage){"user", text};
    }
    ChatRendered r;
    if (chat_render(ct, cm, k, 1, &r)) die("%s: %s", where, ld_last_error());
    out->n_ids = encode_chat(m, &r, &out->ids);
    chat_rendered_free(&r);
    free(cm);
}

static void stream_stdout(void *ctx, int req, const char *b, int n) {
    (void)ctx, (void)req;
    fwrite(b, 1, (size_t)n, stdout);
    fflush(stdout);
}

typedef struct {
    double t0;
    int tty;
} Progress;

static void progress(void *ctx, int done, int total, long tokens) {
    Progress *p = ctx;
    double dt = ld_time_s() - p->t0;
    double rate = dt > 0 ? tokens / dt : 0, eta = done ? dt * (total - done) / done : 0;
    if (p->tty)
        fprintf(stderr, "\rgenerate: %d/%d answers, %ld generated tokens, %.1f generated tok/s, ETA %.0fs   ", done, total, tokens, rate,
                eta);
    else if (done == total || done % 16 == 0)
        fprintf(stderr, "generate: %d/%d answers, %ld generated tokens, %.1f generated tok/s, ETA %.0fs\n", done, total, tokens, rate, eta);
    if (p->tty && done == total) fprintf(stderr, "\n");
}

// One answer's JSONL line (heap, with its newline).
static char *answer_line(const Prompt *p, const GenRequest *r, int sample) {
    cJSON *j = cJSON_CreateObject();
    if (p->id) cJSON_AddItemToObject(j, "id", cJSON_Parse(p->id));
    cJSON_AddNumberToObject(j, "sample", sample);
    cJSON_AddStringToObject(j, "text", r->text);
    cJSON_AddStringToObject(j, "finish_reason", r->finish == FINISH_STOP ? "stop" : "length");
    cJSON_AddNumberToObject(j, "prompt_tokens", p->n_ids);
    cJSON_AddNumberToObject(j, "completion_tokens", r->n_tokens);
    char *s = cJSON_PrintUnformatted(j), *line = ld_xmalloc(strlen(s) + 2);
    sprintf(line, "%s\n", s);
    free(s), cJSON_Delete(j);
    return line;
}

// Request i is rank (i mod world)'s: shares of even length whatever the order of the input. Generates this rank's
// share, in place in reqs.
static void generate_share(Model *m, GenRequest *reqs, int n_req, const GenParams *gp, const DistPlace *at) {
    int n_mine = 0;
    GenRequest *mine = ld_xcalloc((size_t)n_req / at->world + 1, sizeof *mine);
    for (int i = at->rank; i < n_req; i += at->world) mine[n_mine++] = reqs[i];
    if (generate(m, mine, n_mine, gp, NULL, NULL)) die("%s", ld_last_error());
    for (int i = at->rank, k = 0; i < n_req; i += at->world) reqs[i] = mine[k++];
    free(mine);
}

// Every answer in input order to out: this rank's lines, gathered on rank 0, which puts request i's line from
// rank i mod world's share.
static void write_answers(Dist *d, FILE *out, const Prompt *prompts, const GenRequest *reqs, int n_req, int samples) {
    const DistPlace *at = dist_place(d);
    size_t len = 0, cap = 1;
    char *mine = ld_xmalloc(cap);
    for (int i = at->rank; i < n_req; i += at->world) {
        char *line = answer_line(&prompts[i / samples], &reqs[i], i % samples);
        size_t n = strlen(line);
        if (len + n + 1 > cap) mine = ld_xrealloc(mine, cap = 2 * (len + n + 1));
        memcpy(mine + len, line, n + 1), len += n;
        free(line);
    }
    char *all = NULL;
    size_t *each = ld_xcalloc((size_t)at->world, sizeof *each);
    if (dist_gather(d, mine, len, &all, each, "gathering the answers")) die("%s", ld_last_error());
    if (at->rank == 0) {
        const char **next = ld_xcalloc((size_t)at->world, sizeof *next);
        for (int r = 0, off = 0; r < at->world; off += (int)each[r], r++) next[r] = all + off;
        for (int i = 0; i < n_req; i++) {
            const char *p = next[i % at->world];
            size_t n = strcspn(p, "\n") + 1;  // JSON keeps newlines escaped: one line per answer, each ending in one
            fwrite(p, 1, n, out);
            next[i % at->world] = p + n;
        }
        free(next);
    }
    free(all), free(each), free(mine);
}

int cmd_generate(int argc, char **argv) {
    Args a = {argc, argv, 1, "generate"};
    GenOptions o;
    gen_options_init(&o);
    const char *prompt = NULL, *input = NULL, *output = NULL;
    int ranks = 0;
    float timeout_s = 300;
    DistOptions dist_options = {0};
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf("%s%s", k_help, k_gen_options_help);
            return 0;
        }
        if (gen_options_parse(&a, &o) || arg_value(&a, "--prompt", &prompt) || arg_value(&a, "--input", &input) ||
            arg_value(&a, "--output", &output) || arg_int(&a, "--samples", &o.samples, 1, 1000) ||
            arg_int(&a, "--ranks", &ranks, 1, 4096) || arg_float(&a, "--dist-timeout", &timeout_s, 1, 86400) ||
            arg_value(&a, "--dist-init", &dist_options.init))
            continue;
        arg_unknown(&a);
    }
    if (!prompt == !input) die("generate needs exactly one of --prompt TEXT or --input FILE.jsonl");
    if (ranks > 1 && !input) die("--ranks answers an --input file; one --prompt runs on one process");
    char out_dir[4096] = "";  // auto's rendezvous file goes beside the answers
    const char *slash = output ? strrchr(output, '/') : NULL;
    if (output) snprintf(out_dir, sizeof out_dir, "%.*s", slash ? (int)(slash - output) : 1, slash ? output : ".");
    dist_options.timeout_s = timeout_s, dist_options.dir = out_dir[0] ? out_dir : NULL;
    Dist *dist = join_ranks_or_die(argv, ranks, "ranks", &dist_options, &o.threads);
    const DistPlace *at = dist_place(dist);
    if (at->world > 1 && !input) die("%s started %d ranks, but one --prompt runs on one process (use --input)", at->launcher, at->world);
    set_threads(o.threads);
    // Read and validate the whole input before any work, so a bad line 900 does not waste an hour.
    cJSON **lines = NULL;
    int *linenos = NULL, n_lines = 0;
    if (input) {
        if (jsonl_read(input, &lines, &linenos, &n_lines, 0)) die("%s", ld_last_error());
        for (int i = 0; i < n_lines; i++) {
            cJSON *p = cJSON_GetObjectItemCaseSensitive(lines[i], "prompt"), *m = cJSON_GetObjectItemCaseSensitive(lines[i], "messages");
            if (!cJSON_IsString(p) && !cJSON_IsArray(m)) die("%s:%d: needs \"prompt\" (string) or \"messages\" (array)", input, linenos[i]);
        }
    }
    Model *m = load_model_or_die(o.model);
    attach_adapter_or_die(m, o.adapter);
    o.gen.use_gpu = device_choose(o.device), o.gen.gpu_bf16 = precision_bf16(o.precision);
    int gpu = o.gen.use_gpu && at->world > 1 ? dist_local_gpu(dist) : 0;
    if (gpu < 0 || (o.gen.use_gpu && at->world > 1 && ld_cuda_use_device(gpu))) die("rank %d: %s", at->rank, ld_last_error());
    ChatTemplate ct = {0};
    int needs_template = !o.raw;  // raw prompts skip it; messages always need it
    for (int i = 0; i < n_lines; i++) needs_template |= cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(lines[i], "messages"));
    if (needs_template) chat_template_or_die(m, o.chat_template, &ct);
    int n_prompts = input ? n_lines : 1;
    Prompt *prompts = ld_xcalloc((size_t)n_prompts, sizeof(Prompt));
    char where[1024];
    for (int i = 0; i < n_prompts; i++) {
        if (input) {
            snprintf(where, sizeof where, "%s:%d", input, linenos[i]);
            cJSON *p = cJSON_GetObjectItemCaseSensitive(lines[i], "prompt"), *id = cJSON_GetObjectItemCaseSensitive(lines[i], "id");
            if (cJSON_IsString(p) && !o.raw) {
                build_prompt(m, &ct, &o, NULL, p->valuestring, &prompts[i], where);
            } else {
                build_prompt(m, &ct, &o, cJSON_IsString(p) ? NULL : cJSON_GetObjectItemCaseSensitive(lines[i], "messages"),
                             cJSON_IsString(p) ? p->valuestring : NULL, &prompts[i], where);
            }
            if (id) prompts[i].id = cJSON_PrintUnformatted(id);
        } else {
            build_prompt(m, &ct, &o, NULL, prompt, &prompts[i], "--prompt");
        }
    }
    int stop_ids[16];
    o.gen.stop_ids = stop_ids;
    o.gen.n_stop_ids = gen_default_stop_ids(m, stop_ids, 16);
    o.gen.stop_strings = o.stops;
    o.gen.n_stop_strings = o.n_stops;
    int n_req = n_prompts * o.samples;
    GenRequest *reqs = ld_xcalloc((size_t)n_req, sizeof(GenRequest));
    for (int i = 0; i < n_prompts; i++)
        for (int k = 0; k < o.samples; k++) {
            GenRequest *r = &reqs[i * o.samples + k];
            r->prompt = prompts[i].ids;
            r->n_prompt = prompts[i].n_ids;
            r->seed_stream = (uint64_t)k;
        }
    Progress pg = {ld_time_s(), isatty(2)};
    if (input && at->rank == 0) {  // rank 0's share stands for the whole
        o.gen.progress = progress;
        o.gen.progress_ctx = &pg;
    }
    double t0 = ld_time_s();
    if (!input && generate(m, reqs, n_req, &o.gen, stream_stdout, NULL)) die("%s", ld_last_error());
    if (input) generate_share(m, reqs, n_req, &o.gen, at);
    if (dist_wait_for_all(dist, "waiting for the other ranks' answers")) die("%s", ld_last_error());
    double tokens[2] = {0, 0};  // generated, prompt (every sample feeds its prompt through the model)
    for (int i = at->rank; i < n_req; i += at->world) tokens[0] += reqs[i].n_tokens, tokens[1] += reqs[i].n_prompt;
    if (dist_sum_f64(dist, tokens, 2, "counting the tokens")) die("%s", ld_last_error());
    FILE *out = stdout;
    if (input && output && at->rank == 0 && !(out = fopen(output, "w"))) die("%s: cannot write", output);
    if (input)
        write_answers(dist, out, prompts, reqs, n_req, o.samples);
    else
        printf("\n");
    if (out != stdout && fclose(out)) die("%s: write failed", output);
    double dt = ld_time_s() - t0;
    // Prompts and answers are decoded together, so each rate is over the whole time: long prompts show as a high
    // prompt rate beside a low generated one, not as a slow engine.
    if (at->rank == 0)
        fprintf(stderr, "llamaduo: %d answer(s) in %.2fs%s: %.0f prompt tokens (%.1f tok/s), %.0f generated tokens (%.1f tok/s)\n", n_req,
                dt, at->world > 1 ? " on all ranks" : "", tokens[1], dt > 0 ? tokens[1] / dt : 0, tokens[0], dt > 0 ? tokens[0] / dt : 0);
    for (int i = 0; i < n_req; i++) gen_request_free(&reqs[i]);
    for (int i = 0; i < n_prompts; i++) {
        free(prompts[i].ids);
        free(prompts[i].id);
    }
    for (int i = 0; i < n_lines; i++) cJSON_Delete(lines[i]);
    free(lines), free(linenos), free(prompts), free(reqs);
    chat_template_free(&ct);
    model_free(m);
    die_ends_ranks(NULL);
    dist_close(dist);
    return 0;
}
