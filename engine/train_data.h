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

typedef struct {
    TrainRecord *v;
    int n;
    int skipped, truncated;  // records longer than max_len left out or cut (long_records)
} TrainData;

// Every chat record of a JSONL file (records.h) as training tokens. A record longer than max_len is skipped,
// truncated or refused as long_records says ("skip", "truncate", "error"). -1 with an error naming the file and
// the record, or saying that nothing usable is left.
int train_data_load(const Model *m, const ChatTemplate *t, const char *path, int full_sequence, int max_len, const char *long_records,
                    TrainData *out);
void train_data_free(TrainData *d);
