#include "train_data.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
    int *v, n, cap;
} Ids;

static void ids_push(Ids *x, const int *v, int n, int **mask, int trained) {
    if (x->n + n > x->cap) {
        x->cap = (x->n + n) * 2;
        x->v = ld_xrealloc(x->v, sizeof(int) * (size_t)x->cap);
        *mask = ld_xrealloc(*mask, sizeof(int) * (size_t)x->cap);
    }
    memcpy(x->v + x->n, v, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) (*mask)[x->n + i] = trained;
    x->n += n;
}

// Encodes text[a, b) with special tokens parsed only outside the rendered message contents.
static int encode_piece(const Model *m, const ChatRendered *r, size_t a, size_t b, int **ids) {
    size_t *spans = ld_xmalloc(sizeof(size_t) * 2 * (size_t)(r->n_content + 1));
    int k = 0;
    for (int i = 0; i < r->n_content; i++) {
        size_t s = r->content_spans[2 * i], e = r->content_spans[2 * i + 1];
        if (e <= a || s >= b) continue;
        spans[2 * k] = (s > a ? s : a) - a;
        spans[2 * k + 1] = (e < b ? e : b) - a;
        k++;
    }
    int n = tok_encode_protected(m->tok, r->text + a, b - a, TOK_PARSE_SPECIAL, spans, k, ids);
    free(spans);
    return n;
}

int train_record_from_chat(const Model *m, const ChatTemplate *t, const ChatMessage *msgs, int n_msgs, int full_sequence,
                           TrainRecord *out) {
    memset(out, 0, sizeof *out);
    ChatRendered r;
    if (chat_render(t, msgs, n_msgs, 0, &r)) return -1;
    if (!r.n_assistant) {
        ld_set_error("no assistant message to train on");
        chat_rendered_free(&r);
        return -1;
    }
    Ids all = {0};
    int *trained = NULL;
    size_t at = 0;
    for (int i = 0; i <= r.n_assistant; i++) {
        size_t s = i < r.n_assistant ? r.assistant_spans[2 * i] : r.len, e = i < r.n_assistant ? r.assistant_spans[2 * i + 1] : r.len;
        int *ids, n;
        if (s > at) {  // the prompt part before this answer (or the template's tail after the last one)
            n = encode_piece(m, &r, at, s, &ids);
            ids_push(&all, ids, n, &trained, 0);
            free(ids);
        }
        if (e > s) {  // the answer with its end-of-turn marker
            n = encode_piece(m, &r, s, e, &ids);
            ids_push(&all, ids, n, &trained, 1);
            free(ids);
        }
        at = e;
    }
    chat_rendered_free(&r);
    out->n = all.n;
    out->ids = all.v;
    out->targets = ld_xmalloc(sizeof(int) * (size_t)(all.n + 1));
    for (int i = 0; i < all.n; i++) out->targets[i] = i + 1 < all.n && (full_sequence || trained[i + 1]) ? all.v[i + 1] : -100;
    free(trained);
    return 0;
}

void train_record_free(TrainRecord *r) {
    free(r->ids);
    free(r->targets);
    memset(r, 0, sizeof *r);
}
