#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "safetensors.h"
#include "util.h"

int lora_params(Lora *l, Lora *g, Param **out) {
    int n = 0;
    Param *v = ld_xcalloc((size_t)l->n_layers * LT_COUNT * 2, sizeof(Param));
    for (int i = 0; i < l->n_layers * LT_COUNT; i++) {
        LoraPair *p = &l->w[i], *q = &g->w[i];
        if (!p->A) continue;
        for (int ab = 0; ab < 2; ab++, n++) {
            snprintf(v[n].name, sizeof v[n].name, "layers.%d.%s.lora_%c", i / LT_COUNT, lora_target_name((LoraTarget)(i % LT_COUNT)),
                     ab ? 'B' : 'A');
            v[n].p = ab ? p->B : p->A, v[n].g = ab ? q->B : q->A;
            v[n].n = (size_t)l->rank * (ab ? p->out : p->in);
            v[n].decay = 1;
        }
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
    }
    free(t), free(tg);
    *out = v;
    return n;
}

AdamW *adamw_new(Param *v, int n) {
    AdamW *o = ld_xcalloc(1, sizeof *o);
    o->v = v, o->n = n;
    o->m = ld_xcalloc((size_t)n, sizeof(float *));
    o->s = ld_xcalloc((size_t)n, sizeof(float *));
    for (int i = 0; i < n; i++) o->m[i] = ld_xcalloc(v[i].n, sizeof(float)), o->s[i] = ld_xcalloc(v[i].n, sizeof(float));
    return o;
}

void adamw_free(AdamW *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) free(o->m[i]), free(o->s[i]);
    free(o->m), free(o->s), free(o->v), free(o);
}

void adamw_zero_grad(AdamW *o) {
    for (int i = 0; i < o->n; i++) memset(o->v[i].g, 0, sizeof(float) * o->v[i].n);
}

void adamw_scale_grad(AdamW *o, float s) {
    for (int i = 0; i < o->n; i++) k_scale(o->v[i].g, o->v[i].n, s);
}

double adamw_step(AdamW *o, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm) {
    double ss = 0;
    for (int i = 0; i < o->n; i++) ss += k_sumsq(o->v[i].g, o->v[i].n);
    double norm = sqrt(ss);
    float clip = max_norm > 0 ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
    if (clip < 1.0f) adamw_scale_grad(o, clip);
    o->step++;
    for (int i = 0; i < o->n; i++)
        k_adamw(o->v[i].p, o->v[i].g, o->m[i], o->s[i], o->v[i].n, lr, beta1, beta2, eps, o->v[i].decay ? weight_decay : 0, o->step);
    return norm;
}

int adamw_save(const AdamW *o, const char *path) {
    StWriteTensor *ts = ld_xcalloc((size_t)o->n * 3 + 1, sizeof(StWriteTensor));
    char(*names)[168] = ld_xcalloc((size_t)o->n * 3, 168);
    float step = (float)o->step;  // exact for any realistic step count (< 2^24)
    int k = 0;
    for (int part = 0; part < 3; part++)
        for (int i = 0; i < o->n; i++, k++) {
            snprintf(names[k], 168, "%c.%s", "pms"[part], o -> v[i].name);
            ts[k] = (StWriteTensor){names[k], part == 0 ? o->v[i].p : part == 1 ? o->m[i] : o->s[i], 1, {(int64_t)o->v[i].n}};
        }
    ts[k++] = (StWriteTensor){"adam_step", &step, 1, {1}};
    int rc = st_write_f32(path, ts, k);
    free(ts), free(names);
    return rc;
}

int adamw_load(AdamW *o, const char *path) {
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
            } else {
                memcpy(part == 0 ? o->v[i].p : part == 1 ? o->m[i] : o->s[i], t->data, t->nbytes);
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
