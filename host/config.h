// defines: reading YAML configs (libyaml) into a cJSON tree, and strict typed access to it — unknown keys,
// wrong types and out-of-range values are refused with the file, the key path and the reason.
#pragma once
#include <cjson/cJSON.h>

#include "llm_client.h"
#include "provider.h"

// Parses YAML text into a cJSON tree (plain scalars that look like numbers/booleans/null become those).
cJSON *yaml_to_json(const char *text, size_t len, const char *name);
cJSON *config_load(const char *path);  // NULL with ld_last_error()

// Strict readers: `path` names the key for errors ("service.max_tokens"). Each returns 0 or -1 with an error.
int cfg_check_keys(const cJSON *obj, const char *path, const char *const *allowed, const char *file);

// The `service` section: one provider with its limits.
int cfg_service(const cJSON *svc, const char *path, const char *file, ProviderConfig *p, ClientLimits *l);
