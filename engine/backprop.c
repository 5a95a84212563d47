#include "backprop.h"

#include <math.h>

#include "util.h"

int train_batch_check(const ModelConfig *c, const TrainBatch *b) {
    int V = c->vocab;
    for (int t = 0; t < b->T; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= V || (b->targets[t] != -100 && (b->targets[t] < 0 || b->targets[t] >= V))) {
            ld_set_error("token %d (%d -> %d) is outside the vocabulary (%d)", t, b->tokens[t], b->targets[t], V);
            return -1;
        }
    return 0;
}

float train_loss_and_grad(const Model *m, const Lora *lora, Lora *grad, Model *mg, const TrainBatch *b, int *n_counted, int recompute) {
    if (train_batch_check(&m->cfg, b)) return NAN;
    const Backend *be = &ld_backend_cpu;
    Transformer t = {.be = be, .cfg = &m->cfg, .w = model_weights(m), .adapter = lora, .recompute = recompute};
    ModelWeights gw = mg ? model_weights(mg) : (ModelWeights){0};
    TrainStep step = {.adapter_grad = grad, .weight_grad = mg ? &gw : NULL, .row0 = b->row0, .loss_norm = b->loss_norm};
    if (lora && grad) step.dropout = lora->dropout, step.dropout_seed = lora->dropout_seed;
    TokenPlan plan;
    float loss = NAN;
    if (token_plan_packed(be, &m->cfg, b, &plan)) return NAN;
    if (transformer_loss(&t, &plan, b->targets, grad || mg ? &step : NULL, &loss, n_counted))
        loss = NAN;
    else if (isnan(loss))
        ld_set_error("the loss is not a number (the training diverged: a lower learning rate may help)");
    token_plan_free(be, &plan);
    return loss;
}
