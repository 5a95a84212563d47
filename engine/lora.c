#include "lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <stdio.h>

#include "kernels.h"
#include "safetensors.h"
#include "util.h"

size_t lora_floats(const Lora *l) {
    size_t n = 0;
    for (int i = 0; i < l->n_layers * LT_COUNT; i++)
        if (l->w[i].in) n += (size_t)l->rank * (l->w[i].in + l->w[i].out);
    return n;
}

void lora_place(Lora *l, float *base) {
    l->data = base;
    for (int layer = 0; layer < l->n_layers; layer++) {
        LoraPair *w = &l->w[layer * LT_COUNT];
        for (int t = 0; t < LT_COUNT; t++)
            if (w[t].in) w[t].A = base, base += (size_t)l->rank * w[t].in;
        for (int t = 0; t < LT_COUNT; t++)
            if (w[t].in) w[t].B = base, base += (size_t)l->rank * w[t].out;
    }
}

Lora *lora_new(const ModelConfig *c, int rank, float alpha, int rslora, unsigned target_mask) {
    Lora *l = ld_xcalloc(1, sizeof *l);
    l->rank = rank;
    l->n_layers = c->n_layers;
    l->scale = rslora ? alpha / sqrtf((float)rank) : alpha / (float)rank;
    l->alpha = alpha;
    l->rslora = rslora;
    l->w = ld_xcalloc((size_t)c->n_layers * LT_COUNT, sizeof(LoraPair));
    int D = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    const int in[LT_COUNT] = {D, D, D, qd, D, D, F}, out[LT_COUNT] = {qd, kvd, kvd, D, F, F, D};
    for (int i = 0; i < c->n_layers; i++)
        for (int t = 0; t < LT_COUNT; t++)
            if (target_mask & (1u << t)) l->w[i * LT_COUNT + t].in = in[t], l->w[i * LT_COUNT + t].out = out[t];
    size_t n = lora_floats(l);
    lora_place(l, ld_xcalloc(n ? n : 1, sizeof(float)));
    return l;
}

void lora_free(Lora *l) {
    if (!l) return;
    free(l->data);
    free(l->w);
    free(l);
}

void lora_zero(Lora *l) {
    for (int i = 0; i < l->n_layers * LT_COUNT; i++)
        if (l->w[i].A) {
            memset(l->w[i].A, 0, sizeof(float) * (size_t)l->rank * l->w[i].in);
            memset(l->w[i].B, 0, sizeof(float) * (size_t)l->w[i].out * l->rank);
        }
}

static void peft_name(char *out, size_t cap, int layer, LoraTarget t, char ab) {
    snprintf(out, cap, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer, t <= LT_O ? "self_attn" : "mlp",
             lora_target_name((LoraTarget)t), ab);
}

int lora_save_peft(const Lora *l, const char *dir, const char *base_model) {
    if (ld_mkdir_p(dir)) return -1;
    int n = 0;
    StWriteTensor *ts = ld_xcalloc((size_t)l->n_layers * LT_COUNT * 2, sizeof(StWriteTensor));
    char(*names)[160] = ld_xcalloc((size_t)l->n_layers * LT_COUNT * 2, 160);
    unsigned mask = 0;
    for (int i = 0; i < l->n_layers; i++)
        for (int t = 0; t < LT_COUNT; t++) {
            const LoraPair *p = &l->w[i * LT_COUNT + t];
            if (!p->A) continue;
            mask |= 1u << t;
            peft_name(names[n], 160, i, (LoraTarget)t, 'A');
            ts[n] = (StWriteTensor){names[n], p->A, 2, {l->rank, p->in}};
            n++;
            peft_name(names[n], 160, i, (LoraTarget)t, 'B');
            ts[n] = (StWriteTensor){names[n], p->B, 2, {p->out, l->rank}};
            n++;
        }
    char *st = ld_path_join(dir, "adapter_model.safetensors");
    int rc = st_write_f32(st, ts, n);
    free(st), free(ts), free(names);
    if (rc) return -1;
    cJSON *c = cJSON_CreateObject(), *targets = cJSON_AddArrayToObject(c, "target_modules");
    cJSON_AddStringToObject(c, "peft_type", "LORA");
    cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(c, "base_model_name_or_path", base_model ? base_model : "");
    cJSON_AddNumberToObject(c, "r", l->rank);
    cJSON_AddNumberToObject(c, "lora_alpha", l->alpha);
    cJSON_AddNumberToObject(c, "lora_dropout", l->dropout);
    cJSON_AddBoolToObject(c, "use_rslora", l->rslora);
    cJSON_AddStringToObject(c, "bias", "none");
    cJSON_AddBoolToObject(c, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(c, "inference_mode", 1);
    for (int t = 0; t < LT_COUNT; t++)
        if (mask & (1u << t)) cJSON_AddItemToArray(targets, cJSON_CreateString(lora_target_name((LoraTarget)t)));
    char *txt = cJSON_Print(c), *cp = ld_path_join(dir, "adapter_config.json"), *tmp;
    cJSON_Delete(c);
    FILE *f = ld_atomic_open(cp, &tmp);
    rc = f ? ld_atomic_commit(f, tmp, cp, fputs(txt, f) >= 0) : -1;
    free(txt), free(cp);
    return rc;
}

Lora *lora_load_peft(const ModelConfig *c, const char *dir) {
    char *cp = ld_path_join(dir, "adapter_config.json"), *sp = ld_path_join(dir, "adapter_model.safetensors");
    Lora *l = NULL;
    SafeTensors st = {0};
    char *txt = ld_read_file(cp, NULL);
    cJSON *cfg = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cfg, "r"), *alpha = cJSON_GetObjectItemCaseSensitive(cfg, "lora_alpha");
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(cfg, "target_modules"),
                *type = cJSON_GetObjectItemCaseSensitive(cfg, "peft_type");
    if (!cfg) {
        if (ld_file_exists(cp)) ld_set_error("%s: not valid JSON", cp);
        goto done;
    }
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "LORA") || !cJSON_IsNumber(r) || r->valueint < 1 || r->valueint > 4096 ||
        !cJSON_IsNumber(alpha)) {
        ld_set_error("%s: not a LoRA adapter config (peft_type LORA, r and lora_alpha needed)", cp);
        goto done;
    }
    unsigned mask = 0;
    if (cJSON_IsString(targets) && !strcmp(targets->valuestring, "all-linear")) mask = (1u << LT_COUNT) - 1;
    for (const cJSON *t = cJSON_IsArray(targets) ? targets->child : NULL; t; t = t->next)
        for (int k = 0; k < LT_COUNT; k++)
            if (cJSON_IsString(t) && !strcmp(t->valuestring, lora_target_name((LoraTarget)k))) mask |= 1u << k;
    if (!mask) {
        ld_set_error("%s: target_modules names none of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj", cp);
        goto done;
    }
    if (st_open(sp, &st)) goto done;
    l = lora_new(c, r->valueint, (float)alpha->valuedouble, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "use_rslora")), mask);
    const cJSON *dp = cJSON_GetObjectItemCaseSensitive(cfg, "lora_dropout");
    if (cJSON_IsNumber(dp) && dp->valuedouble >= 0 && dp->valuedouble < 1) l->dropout = (float)dp->valuedouble;
    for (int i = 0; i < c->n_layers && l; i++)
        for (int t = 0; t < LT_COUNT && l; t++) {
            LoraPair *p = &l->w[i * LT_COUNT + t];
            if (!p->A) continue;
            for (int ab = 0; ab < 2 && l; ab++) {
                char name[160];
                peft_name(name, sizeof name, i, (LoraTarget)t, ab ? 'B' : 'A');
                const TensorRef *tr = st_find(&st, name);
                int64_t rows = ab ? p->out : l->rank, cols = ab ? l->rank : p->in;
                if (!tr || tr->n_dims != 2 || tr->shape[0] != rows || tr->shape[1] != cols || !ld_dtype_is_weight(tr->dtype)) {
                    ld_set_error("%s: tensor %s %s (expected [%lld, %lld])", sp, name, tr ? "has the wrong shape or type" : "is missing",
                                 (long long)rows, (long long)cols);
                    lora_free(l);
                    l = NULL;
                    break;
                }
                ld_dequantize(tr->dtype, tr->data, ab ? p->B : p->A, (size_t)(rows * cols));
            }
        }
done:
    if (st.tensors || st.map.data) st_close(&st);
    cJSON_Delete(cfg);
    free(cp), free(sp);
    return l;
}

void lora_scale(Lora *l, float s) {
    for (int i = 0; i < l->n_layers * LT_COUNT; i++)
        if (l->w[i].A) {
            k_scale(l->w[i].A, (size_t)l->rank * l->w[i].in, s);
            k_scale(l->w[i].B, (size_t)l->w[i].out * l->rank, s);
        }
}
