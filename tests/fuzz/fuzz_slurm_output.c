// libFuzzer: what the Slurm commands answer (sbatch --parsable, squeue -o %T, sacct), read for a job id and a job
// state, and a log file pattern made a path; the results must be what the readers promise.
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slurm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1), id[32], state[64], log[256];
    memcpy(text, data, size);
    text[size] = 0;
    if (slurm_parse_job_id(text, id, sizeof id) == 0) assert(id[0] && strspn(id, "0123456789") == strlen(id));
    slurm_parse_state(text, state, sizeof state);
    assert(strspn(state, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == strlen(state));
    slurm_log_path(text, "123", log, sizeof log);
    free(text);
    return 0;
}
