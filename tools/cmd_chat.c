// llamaduo chat: an interactive conversation; answers stream as they are generated.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static void stream_stdout(void *ctx, int req, const char *b, int n) {
    (void)ctx, (void)req;
    fwrite(b, 1, (size_t)n, stdout);
    fflush(stdout);
}

int cmd_chat(int argc, char **argv) {
    Args a = {argc, argv, 1, "chat"};
    GenOptions o;
    gen_options_init(&o);
    o.gen.sampler.temperature = 0.7f;  // conversational default; --temperature 0 for greedy
    o.gen.sampler.top_p = 0.95f;
    o.gen.sampler.seed = (uint64_t)getpid();
    while (a.i < argc) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) {
            printf(
                "usage: llamaduo chat --model PATH [options]\n\nType a message and press Enter; /reset starts over, "
                "/exit (or end of input) quits.\nDefaults here: --temperature 0.7 --top-p 0.95, seed from the "
                "process id.\n\n%s",
                k_gen_options_help);
            return 0;
        }
        if (gen_options_parse(&a, &o)) continue;
        arg_unknown(&a);
    }
    if (o.raw) die("chat always uses the chat template; use generate --raw for plain text");
    set_threads(o.threads);
    Model *m = load_model_or_die(o.model);
    attach_adapter_or_die(m, o.adapter);
    o.gen.use_gpu = device_choose(o.device), o.gen.gpu_bf16 = precision_bf16(o.precision);
    ChatTemplate ct;
    chat_template_or_die(m, o.chat_template, &ct);
    int stop_ids[16];
    o.gen.stop_ids = stop_ids;
    o.gen.n_stop_ids = gen_default_stop_ids(m, stop_ids, 16);
    o.gen.stop_strings = o.stops;
    o.gen.n_stop_strings = o.n_stops;
    ChatMessage *msgs = NULL;
    char **owned = NULL;
    int n = 0, tty = isatty(0);
    if (o.system) {
        msgs = ld_xrealloc(msgs, sizeof(ChatMessage));
        owned = ld_xrealloc(owned, sizeof(char *));
        owned[0] = ld_xstrdup(o.system);
        msgs[n++] = (ChatMessage){"system", owned[0]};
    }
    int base = n;
    char *line = NULL;
    size_t cap = 0;
    for (uint64_t turn = 0;; turn++) {
        if (tty) fprintf(stderr, "> ");
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        if (!strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            for (int i = base; i < n; i++) free(owned[i]);
            n = base;
            continue;
        }
        msgs = ld_xrealloc(msgs, sizeof(ChatMessage) * (size_t)(n + 2));
        owned = ld_xrealloc(owned, sizeof(char *) * (size_t)(n + 2));
        owned[n] = ld_xstrdup(line);
        msgs[n] = (ChatMessage){"user", owned[n]};
        n++;
        ChatRendered r;
        if (chat_render(&ct, msgs, n, 1, &r)) die("%s", ld_last_error());
        GenRequest req = {0};
        int *ids;
        req.n_prompt = encode_chat(m, &r, &ids);
        req.prompt = ids;
        req.seed_stream = turn;
        chat_rendered_free(&r);
        if (generate(m, &req, 1, &o.gen, stream_stdout, NULL)) {
            fprintf(stderr, "\nllamaduo: %s (use /reset to start over)\n", ld_last_error());
            free(owned[--n]);
            free(ids);
            continue;
        }
        printf("\n");
        fflush(stdout);
        owned[n] = req.text;
        req.text = NULL;
        msgs[n] = (ChatMessage){"assistant", owned[n]};
        n++;
        gen_request_free(&req);
        free(ids);
    }
    free(line);
    for (int i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(msgs);
    chat_template_free(&ct);
    model_free(m);
    return 0;
}
