#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "safetensors.h"
#include "util.h"

// in lora_place's order: a layer's A, then its B
int lora_params(Lora *l, Lora *g, Param **out) {
    int n = 0;
    Param *v = ld_xcalloc((size_t)l->n_layers * LT_COUNT * 2, sizeof(Param));
    for (int layer = 0; layer < l->n_layers; layer++)
        for (int ab = 0; ab < 2; ab++)
            for (int t = 0; t < LT_COUNT; t++) {
                LoraPair *p = &l->w[layer * LT_COUNT + t], *q = &g->w[layer * LT_COUNT + t];
                if (!p->A) continue;
                snprintf(v[n].name, sizeof v[n].name, "layers.%d.%s.lora_%c", layer, lora_target_name((LoraTarget)t), ab ? 'B' : 'A');
                v[n].p = ab ? p->B : p->A, v[n].g = ab ? q->B : q->A;
                v[n].n = (size_t)l->rank * (ab ? p->out : p->in);
                v[n].layer = layer;
                v[n++].decay = 1;
            }
    *out = v;
    return n;
}

int model_params(Model *m, Model *g, Param **out) {
    ModelTensor *t, *tg;
    int n = model_tensors(m, &t), ng = model_tensors(g, &tg);
    Param *v = ld_xcalloc((size_t)n, sizeof(Param));
    for (int i = 0; i < n && i < ng; i++) {
        snprintf(v[i].name, sizeof v[i].name, "%s", t[i].hf);
        v[i].p = t[i].lin ? (float *)t[i].lin->data : *t[i].vec;
        v[i].g = tg[i].lin ? (float *)tg[i].lin->data : *tg[i].vec;
        v[i].n = (size_t)(t[i].lin ? t[i].rows * t[i].cols : t[i].cols);
        v[i].decay = t[i].lin != NULL;
        v[i].layer = t[i].layer >= 0 ? t[i].layer : t[i].lin == &m->embed ? -1 : m->cfg.n_layers;
    }
    free(t), free(tg);
    *out = v;
    return n;
}

// The moments of elements [lo[i], hi[i]) of each parameter, zeroed.
static void alloc_moments(AdamW *o) {
    for (int i = 0; i < o->n; i++) {
        size_t len = o->hi[i] - o->lo[i];
        free(o->m[i]), free(o->s[i]);
        o->m[i] = ld_xcalloc(len ? len : 1, sizeof(float)), o->s[i] = ld_xcalloc(len ? len : 1, sizeof(float));
    }
}

AdamW *adamw_new(Param *v, int n) {
    AdamW *o = ld_xcalloc(1, sizeof *o);
    o->v = v, o->n = n;
    o->m = ld_xcalloc((size_t)n, sizeof(float *)), o->s = ld_xcalloc((size_t)n, sizeof(float *));
    o->lo = ld_xcalloc((size_t)n, sizeof(size_t)), o->hi = ld_xcalloc((size_t)n, sizeof(size_t));
    for (int i = 0; i < n; i++) o->hi[i] = v[i].n;
    alloc_moments(o);
    return o;
}

void adamw_shard(AdamW *o, int rank, int world) {
    for (int i = 0; i < o->n; i++)  // dist_chunk's split, which the collectives use
        o->lo[i] = (size_t)rank * o->v[i].n / (size_t)world, o->hi[i] = (size_t)(rank + 1) * o->v[i].n / (size_t)world;
    alloc_moments(o);
}

int adamw_sharded(const AdamW *o) {
    for (int i = 0; i < o->n; i++)
        if (o->lo[i] != 0 || o->hi[i] != o->v[i].n) return 1;
    return 0;
}

size_t adamw_state_floats(const AdamW *o) {
    size_t n = 0;
    for (int i = 0; i < o->n; i++) n += 2 * (o->hi[i] - o->lo[i]);
    return n;
}

void adamw_free(AdamW *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) free(o->m[i]), free(o->s[i]);
    free(o->m), free(o->s), free(o->lo), free(o->hi), free(o->v), free(o);
}

void adamw_zero_grad(AdamW *o) {
    for (int i = 0; i < o->n; i++) memset(o->v[i].g, 0, sizeof(float) * o->v[i].n);
}

void adamw_scale_grad(AdamW *o, float s) {
    for (int i = 0; i < o->n; i++) k_scale(o->v[i].g, o->v[i].n, s);
}

double adamw_sumsq(const AdamW *o) {
    double ss = 0;
    for (int i = 0; i < o->n; i++) ss += k_sumsq(o->v[i].g + o->lo[i], o->hi[i] - o->lo[i]);
    return ss;
}

void adamw_apply(AdamW *o, double norm, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm) {
    float clip = max_norm > 0 ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
    o->step++;
    for (int i = 0; i < o->n; i++) {
        size_t lo = o->lo[i], len = o->hi[i] - lo;
        if (clip < 1.0f) k_scale(o->v[i].g + lo, len, clip);
        k_adamw(o->v[i].p + lo, o->v[i].g + lo, o->m[i], o->s[i], len, lr, beta1, beta2, eps, o->v[i].decay ? weight_decay : 0, o->step);
    }
}

double adamw_step(AdamW *o, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm) {
    double norm = sqrt(adamw_sumsq(o));
    adamw_apply(o, norm, lr, beta1, beta2, eps, weight_decay, max_norm);
    return norm;
}

void adamw_drop_moments(AdamW *o) {
    for (int i = 0; i < o->n; i++) free(o->m[i]), free(o->s[i]), o->m[i] = o->s[i] = NULL;
}

// The file's tensors in order: p.NAME (values), m.NAME, s.NAME of every parameter, then adam_step.
typedef struct {
    const AdamW *o;
    AdamWMomentOut moment;
    void *ctx;
} SaveCtx;

static int produce_tensor(int k, float *dst, void *ctx) {
    const SaveCtx *c = ctx;
    const AdamW *o = c->o;
    if (k == 3 * o->n) return *dst = (float)o->step, 0;  // exact for any realistic step count (< 2^24)
    int part = k / o->n, i = k % o->n;
    if (part == 0) return memcpy(dst, o->v[i].p, sizeof(float) * o->v[i].n), 0;
    return c->moment(part, i, dst, c->ctx);
}

static int own_moment_out(int part, int i, float *dst, void *ctx) {
    const AdamW *o = ctx;
    memcpy(dst, part == 1 ? o->m[i] : o->s[i], sizeof(float) * o->v[i].n);
    return 0;
}

int adamw_save_with(const AdamW *o, const char *path, AdamWMomentOut moment, void *ctx) {
    StWriteTensor *ts = ld_xcalloc((size_t)o->n * 3 + 1, sizeof(StWriteTensor));
    char(*names)[168] = ld_xcalloc((size_t)o->n * 3, 168);
    int k = 0;
    for (int part = 0; part < 3; part++)
        for (int i = 0; i < o->n; i++, k++) {
            snprintf(names[k], 168, "%c.%s", "pms"[part], o -> v[i].name);
            ts[k] = (StWriteTensor){names[k], NULL, 1, {(int64_t)o->v[i].n}};
        }
    ts[k++] = (StWriteTensor){"adam_step", NULL, 1, {1}};
    SaveCtx c = {o, moment, ctx};
    int rc = st_write_f32_stream(path, ts, k, produce_tensor, &c);
    free(ts), free(names);
    return rc;
}

int adamw_save(const AdamW *o, const char *path) {
    if (adamw_sharded(o)) return ld_set_error("%s: the optimiser's state is sharded: gather it before saving", path), -1;
    return adamw_save_with(o, path, own_moment_out, (void *)o);
}

// the moments of the elements this optimiser updates
static int own_moment_in(int part, int i, const float *all, void *ctx) {
    AdamW *o = ctx;
    memcpy(part == 1 ? o->m[i] : o->s[i], all + o->lo[i], sizeof(float) * (o->hi[i] - o->lo[i]));
    return 0;
}

int adamw_load_with(AdamW *o, const char *path, AdamWMomentIn moment, void *ctx) {
    SafeTensors st;
    if (st_open(path, &st)) return -1;
    int rc = 0;
    const TensorRef *step = st_find(&st, "adam_step");
    for (int part = 0; part < 3 && !rc; part++)
        for (int i = 0; i < o->n && !rc; i++) {
            char name[168];
            snprintf(name, sizeof name, "%c.%s", "pms"[part], o -> v[i].name);
            const TensorRef *t = st_find(&st, name);
            if (!t || t->dtype != LD_F32 || t->nbytes != sizeof(float) * o->v[i].n) {
                ld_set_error("%s: tensor %s is %s (a checkpoint of other settings?)", path, name, t ? "of another size" : "missing");
                rc = -1;
            } else if (part == 0) {
                memcpy(o->v[i].p, t->data, t->nbytes);
            } else {
                rc = moment(part, i, (const float *)t->data, ctx);
            }
        }
    if (!rc && (!step || step->dtype != LD_F32 || step->nbytes != 4)) {
        ld_set_error("%s: no adam_step", path);
        rc = -1;
    }
    if (!rc) o->step = (int)*(const float *)step->data;
    st_close(&st);
    return rc;
}

int adamw_load(AdamW *o, const char *path) { return adamw_load_with(o, path, own_moment_in, o); }
