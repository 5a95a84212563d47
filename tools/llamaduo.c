// llamaduo: one executable, one subcommand per job.
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} Command;

static const Command k_commands[] = {
    {"generate", cmd_generate, "answer prompts (one, or a JSONL batch) with a local model"},
    {"chat", cmd_chat, "interactive chat with a local model, streaming tokens"},
    {"train", cmd_train, "fine-tune a LoRA adapter on chat records (writes a PEFT adapter)"},
    {"export", cmd_export, "merge a LoRA adapter into its base model; write an HF directory or a GGUF"},
    {"serve", cmd_serve, "serve the model behind an OpenAI-compatible HTTP API"},
    {"proxy", cmd_proxy, "one endpoint in front of the service LLM and the student: forward, shadow, canary, failover, capture"},
    {"capture", cmd_capture, "what the proxy captured: coverage data for a run, shadow pairs, counts"},
    {"run", cmd_run, "the closed migration loop over a run directory (resumable)"},
    {"status", cmd_status, "where a run stands"},
    {"infer", cmd_infer, "a run round's adapter answers the test prompts"},
    {"probe", cmd_probe, "a run round's adapter answers a probe of its training records (what synthesis aims at)"},
    {"report", cmd_report, "a run's HTML and Markdown report"},
    {"tokenize", cmd_tokenize, "text <-> token ids with a model's tokenizer (JSONL in, JSONL out)"},
    {"perplexity", cmd_perplexity, "perplexity and mean NLL of a model over a text file"},
    {"synth", cmd_synth, "have the service LLM write training pairs like the seeds (validated, deduplicated)"},
    {"judge", cmd_judge, "have the service LLM grade answers against the references"},
    {"scrub", cmd_scrub, "show what the privacy scrubber would replace in a JSONL file before sending"},
    {"info", cmd_info, "describe a model file and the compute devices found"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: llamaduo COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-12s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f, "  %-12s %s\n", "help", "this list");
    fprintf(f, "\n`llamaduo COMMAND --help` describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (!strcmp(argv[1], k_commands[i].name)) return k_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "llamaduo: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
