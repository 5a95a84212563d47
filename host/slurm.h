// defines: the student's stages as Slurm jobs (student.launcher: slurm). A stage's command becomes a job script
// (sbatch options from the run's `slurm:` section; more than one rank runs under srun --mpi=pmix), submitted with
// sbatch under a job name unique to the run, round and stage; its state comes from squeue, then scontrol (then
// sacct, where accounting is on), and waiting for it prints each change of state. The orchestrator needs only
// Slurm's client commands (sbatch, squeue, scontrol, scancel) and stays where the service API is reachable.
#pragma once
#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct {
    const char *partition, *account, *time;  // NULL: the cluster's defaults
    int nodes, gpus;  // gpus: per node (0: none asked for)
    int tasks;  // training ranks per node (0: one per GPU, or 1)
    int cpus_per_task;  // sbatch --cpus-per-task (0: not asked: the cluster's default)
    const cJSON *extra;  // a list of further sbatch options ("--qos=high"), or NULL
    double poll_s;  // seconds between looks at a job's state
} SlurmConfig;

// The config's `slurm:` options are checked here: 0, or -1 with an error naming the key.
int slurm_config_check(const SlurmConfig *c, const char *file);

typedef struct {
    char id[32];  // the job id sbatch gave
    char log[1024];  // its output file
} SlurmJob;

// A job's name for (run directory, round, stage): the same on every rerun of the same directory, different for
// another directory.
void slurm_job_name(const char *run_dir, int round, const char *stage, char *out, size_t cap);
// The job of that name Slurm still has queued or running: 1 (and job->id), 0 if none, -1 on an error.
int slurm_find_active(const char *name, SlurmJob *job);
// The readers of the Slurm commands' answers (fuzzed: tests/fuzz/fuzz_slurm_output.c). sbatch --parsable's:
// the job id ("ID" or "ID;cluster") on a line of its own, the last such among a site's warnings; 0, or -1 when
// there is none. squeue -o %T's or sacct's: the first line that starts with one word in capitals ("CANCELLED by
// 0" is CANCELLED), "" when none.
int slurm_parse_job_id(const char *out, char *id, size_t cap);
void slurm_parse_state(const char *out, char *state, size_t cap);
// A log file pattern (%j: the job id) made the path of job id's log.
void slurm_log_path(const char *pattern, const char *id, char *out, size_t cap);
// Writes `script` (the job: argv run by srun with ranks_per_node × nodes ranks when that is more than 1; with
// --resume added when the file resume_if exists as the job starts, so a job Slurm requeued continues) and
// submits it; log names its output (%j for the id). 0 and *job, or -1 with sbatch's own message.
int slurm_submit(const SlurmConfig *c, const char *name, const char *script, const char *log, int ranks, char *const argv[],
                 const char *resume_if, SlurmJob *job);
// The job's state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, ...), or "" when
// Slurm no longer knows it. 0, -1 when Slurm does not answer (the controller down or busy: asked again later), or
// -2 when its commands cannot run here.
int slurm_state(const char *id, char *state, size_t cap);
// 1 for a state a job leaves by itself (PENDING, RUNNING, ...), 0 for an end.
int slurm_state_active(const char *state);
// Waits for the job's end, saying each change of state on stderr ("run: WHAT: Slurm job N RUNNING") and riding
// out a Slurm that does not answer for up to 30 minutes: 0 when it COMPLETED; -1 with an
// error naming the job, its state and the tail of its log. SIGTERM or SIGINT while it waits cancels the job
// (scancel) and returns -1 saying so.
int slurm_wait(const SlurmJob *job, double poll_s, const char *what);
