// defines: chat records -> training tokens. A conversation is rendered by the same chat-template code as
// generation; the prompt part of each turn is tokenised on its own, exactly as `generate` tokenises a prompt,
// and each assistant turn (content + end-of-turn marker) after it, so training sees the tokens inference
// produces. Targets are -100 except where the next token belongs to an assistant turn (or everywhere, with
// full-sequence loss).
#pragma once
#include "chat.h"
#include "model.h"

typedef struct {
    int *ids, *targets;
    int n;
} TrainRecord;

// -1 with an error (bad roles, nothing to train on).
int train_record_from_chat(const Model *m, const ChatTemplate *t, const ChatMessage *msgs, int n_msgs, int full_sequence, TrainRecord *out);
void train_record_free(TrainRecord *r);
