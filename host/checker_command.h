// defines: a user's checker program (task.check.command) run over a batch of answers — JSONL
// {"id", "prompt", "reference", "answer"} on its stdin (reference null when a synthetic pair is verified),
// one {"id", "score"[, "reason"]} line per item on its stdout, score in [0, 1] (true/false allowed). It runs
// under /bin/sh in its own process group with a time limit and an environment holding no secret (PATH, HOME,
// LANG, LC_ALL, TMPDIR only), so no API key reaches it. A crash, a non-zero exit, a run past the limit,
// garbage, a missing or unknown id, or a score out of range is an error naming the command — never a pass.
#pragma once

typedef struct {
    const char *id, *prompt, *reference, *answer;  // reference NULL: none (written as null)
} CheckItem;

typedef struct {
    const char *command;
    double timeout_s;
} CheckerCommand;

// scores[n] (heap) in [0, 1]; reasons[n] (heap array of heap strings or NULL) when the checker gave them.
int checker_command_run(const CheckerCommand *c, const CheckItem *items, int n, double **scores, char ***reasons);
void checker_reasons_free(char **reasons, int n);
// The checker's output text read back against the items (scores[n], reasons[n] or NULL filled): what
// checker_command_run does with what the program wrote; shared with the fuzz target.
int checker_parse_output(const CheckerCommand *c, const char *text, const CheckItem *items, int n, double *scores, char **reasons);
