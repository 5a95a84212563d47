#include "train_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
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

// One record's messages as ChatMessages (records_read has checked their form).
static int record_tokens(const Model *m, const ChatTemplate *t, const Record *rec, int full_sequence, TrainRecord *out) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec->json, "messages");
    int n = cJSON_GetArraySize(msgs), k = 0;
    ChatMessage *cm = ld_xcalloc((size_t)(n ? n : 1), sizeof(ChatMessage));
    for (const cJSON *x = msgs->child; x; x = x->next, k++)
        cm[k] = (ChatMessage){cJSON_GetObjectItemCaseSensitive(x, "role")->valuestring,
                              cJSON_GetObjectItemCaseSensitive(x, "content")->valuestring};
    int rc = train_record_from_chat(m, t, cm, n, full_sequence, out);
    free(cm);
    return rc;
}

int train_data_load(const Model *m, const ChatTemplate *t, const char *path, int full_sequence, int max_len, const char *long_records,
                    TrainData *d) {
    memset(d, 0, sizeof *d);
    Records recs;
    if (records_read(path, 1, &recs)) return -1;
    d->v = ld_xcalloc((size_t)(recs.n ? recs.n : 1), sizeof(TrainRecord));
    int rc = 0;
    for (int i = 0; i < recs.n && !rc; i++) {
        TrainRecord r;
        if (record_tokens(m, t, &recs.v[i], full_sequence, &r)) {
            char why[512];
            snprintf(why, sizeof why, "%s", ld_last_error());
            ld_set_error("%s: record %s: %s", path, recs.v[i].id, why);
            rc = -1;
        } else if (r.n <= max_len) {
            d->v[d->n++] = r;
        } else if (!strcmp(long_records, "error")) {
            ld_set_error("%s: record %s has %d tokens, more than max_len %d", path, recs.v[i].id, r.n, max_len);
            train_record_free(&r);
            rc = -1;
        } else if (!strcmp(long_records, "skip")) {
            d->skipped++;
            train_record_free(&r);
        } else {  // truncate: the cut record ends untrained
            r.n = max_len;
            r.targets[r.n - 1] = -100;
            d->truncated++;
            d->v[d->n++] = r;
        }
    }
    records_free(&recs);
    if (!rc && !d->n) {
        ld_set_error("%s: no usable records (%d longer than max_len %d were skipped)", path, d->skipped, max_len);
        rc = -1;
    }
    if (rc) train_data_free(d);
    return rc;
}

void train_data_free(TrainData *d) {
    for (int i = 0; i < d->n; i++) train_record_free(&d->v[i]);
    free(d->v);
    memset(d, 0, sizeof *d);
}
