// defines: the service-LLM sections of a YAML config (service, task, synth, judge), read and checked whole
// before any work — unknown keys, wrong types and out-of-range values refused with the file, key and reason.
// Shared by `llamaduo synth` / `judge` and the loop's config (which adds its own sections).
#pragma once
#include "judge_stage.h"
#include "privacy.h"
#include "synth.h"

enum { MAX_JUDGES = 8 };

typedef struct {
    ProviderConfig service, judges[MAX_JUDGES];
    ClientLimits limits, judge_limits[MAX_JUDGES];
    int n_judges;
    int judge_is_service;  // no judge.service(s): the service judges
    SynthConfig synth;
    JudgeConfig judge;  // its rule and check point at the two below
    TaskCheck check;  // task.check
    PassRule rule;  // judge.pass
    const char *judge_method;
    const cJSON *judge_pass;
    PrivacyConfig privacy;  // privacy: (on by default when a service is remote)
    Scrubber *scrubber;  // the compiled privacy patterns, or NULL when privacy is off; every limits struct points at it
    cJSON *local;  // service.local (a model the run serves itself), detached from the tree, or NULL
    const cJSON *judge_service, *judge_services;  // judge.service / judge.services as given (read into judges[])
} StageConfig;

// root: the whole config (kept alive by the caller: strings point into it). The top-level sections are service, task,
// synth, judge and privacy; extra_top: more allowed
// top-level sections (NULL-terminated) or NULL. service.local is accepted only when allow_local.
int stage_config_parse(cJSON *root, const char *path, const char *const *extra_top, int allow_local, StageConfig *c);
void stage_config_free(StageConfig *c);  // the compiled check and rule
