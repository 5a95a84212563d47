#define _GNU_SOURCE
#include "slurm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "text.h"
#include "util.h"

int slurm_config_check(const SlurmConfig *c, const char *file) {
    const cJSON *e;
    if (c->extra && !cJSON_IsArray(c->extra)) {
        ld_set_error("%s: 'slurm.extra' must be a list of sbatch options (\"--qos=high\")", file);
        return -1;
    }
    cJSON_ArrayForEach(e, c->extra) {
        if (!cJSON_IsString(e) || e->valuestring[0] != '-' || strpbrk(e->valuestring, "\n\r")) {
            ld_set_error("%s: 'slurm.extra' holds %s: each item is one sbatch option on one line, such as \"--qos=high\"", file,
                         cJSON_IsString(e) ? e->valuestring : "something that is not text");
            return -1;
        }
    }
    const char *text[] = {c->partition, c->account, c->time};
    for (int i = 0; i < 3; i++)
        if (text[i] && strpbrk(text[i], "\n\r")) {
            ld_set_error("%s: a 'slurm' value holds a line break", file);
            return -1;
        }
    return 0;
}

// Runs a Slurm client command (argv[0] found on PATH), its stdout and stderr into out (cut at cap). Its exit
// status, or -1 with an error when it could not start.
static int run_cmd(char *const argv[], char *out, size_t cap) {
    int fd[2];
    if (pipe(fd)) {
        ld_set_error("pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]), close(fd[1]);
        ld_set_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1), dup2(fd[1], 2), close(fd[0]), close(fd[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    for (ssize_t k; (k = read(fd[0], out + n, cap - 1 - n)) != 0;) {
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) break;
        n += (size_t)k;
        if (n == cap - 1) {  // the rest is drained, not kept
            char sink[4096];
            while (read(fd[0], sink, sizeof sink) > 0) {}
            break;
        }
    }
    out[n] = 0;
    close(fd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && strstr(out, "cannot run")) {
        ld_set_error(
            "%s: Slurm's client commands are not installed here (student.launcher: slurm needs sbatch, squeue, "
            "scontrol, scancel)",
            argv[0]);
        return -1;
    }
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void slurm_job_name(const char *run_dir, int round, const char *stage, char *out, size_t cap) {
    char *abs = realpath(run_dir, NULL);
    const char *dir = abs ? abs : run_dir, *base = strrchr(dir, '/');
    char *h = text_sha256_hex(&dir, 1);
    snprintf(out, cap, "llamaduo-%s-%.8s-r%d-%s", base ? base + 1 : dir, h, round, stage);
    for (char *p = out; *p; p++)  // a name squeue -n finds as it was written: no spaces, commas or quotes
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("._-", *p))) *p = '_';
    free(abs), free(h);
}

void slurm_log_path(const char *pattern, const char *id, char *out, size_t cap) {
    const char *j = strstr(pattern, "%j");
    if (j)
        snprintf(out, cap, "%.*s%s%s", (int)(j - pattern), pattern, id, j + 2);
    else
        snprintf(out, cap, "%s", pattern);
}

int slurm_state_active(const char *s) {
    static const char *const active[] = {"PENDING",   "CONFIGURING", "RUNNING",       "COMPLETING",   "SUSPENDED",   "REQUEUED", "RESIZING",
                                         "STAGE_OUT", "SIGNALING",   "RESV_DEL_HOLD", "REQUEUE_HOLD", "REQUEUE_FED", NULL};
    for (int i = 0; active[i]; i++)
        if (!strcmp(s, active[i])) return 1;
    return 0;
}

int slurm_find_active(const char *name, SlurmJob *job) {
    char out[4096];
    char *argv[] = {"squeue", "-h", "-n", (char *)name, "-o", "%i %T", NULL};
    int rc = run_cmd(argv, out, sizeof out);
    if (rc) {
        if (rc > 0) ld_set_error("squeue failed (exit %d): %s", rc, out);
        return -1;
    }
    char id[32], state[32];
    for (char *line = out, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (sscanf(line, "%31s %31s", id, state) == 2 && slurm_state_active(state)) {
            snprintf(job->id, sizeof job->id, "%s", id);
            return 1;
        }
    }
    return 0;
}

// One argument for a shell script: single-quoted, a quote inside as '\''.
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    fputc('\'', f);
}

// A path in an #SBATCH line: double-quoted (sbatch splits on spaces); in a file name pattern (--output) each '%'
// doubled (Slurm expands them there) but for the %j that names the job's id.
static void put_sbatch_path(FILE *f, const char *key, const char *path, int pattern) {
    fprintf(f, "#SBATCH %s=\"", key);
    for (const char *p = path; *p; p++) {
        fputc(*p, f);
        if (*p == '%' && pattern && p[1] == 'j')
            fputc(*++p, f);
        else if (*p == '%' && pattern)
            fputc('%', f);
    }
    fputs("\"\n", f);
}

static int write_script(const SlurmConfig *c, const char *name, const char *script, const char *log, int ranks, char *const argv[],
                        const char *resume_if) {
    char *tmp, cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) {
        ld_set_error("getcwd: %s", strerror(errno));
        return -1;
    }
    if (strpbrk(cwd, "\"\n") || strpbrk(log, "\"\n")) {
        ld_set_error("%s: a directory whose name holds a double quote or a line break cannot go into a job script", cwd);
        return -1;
    }
    FILE *f = ld_atomic_open(script, &tmp);
    if (!f) return -1;
    fprintf(f, "#!/bin/bash\n# written by llamaduo run (student.launcher: slurm); resubmitting it reruns the stage\n");
    fprintf(f, "#SBATCH --job-name=%s\n", name);
    put_sbatch_path(f, "--output", log, 1);
    put_sbatch_path(f, "--chdir", cwd, 0);
    fprintf(f, "#SBATCH --nodes=%d\n#SBATCH --ntasks-per-node=%d\n", c->nodes, ranks);
    if (c->gpus) fprintf(f, "#SBATCH --gpus-per-node=%d\n", c->gpus);
    if (c->cpus_per_task) fprintf(f, "#SBATCH --cpus-per-task=%d\n", c->cpus_per_task);
    if (c->partition) fprintf(f, "#SBATCH --partition=%s\n", c->partition);
    if (c->account) fprintf(f, "#SBATCH --account=%s\n", c->account);
    if (c->time) fprintf(f, "#SBATCH --time=%s\n", c->time);
    const cJSON *e;
    cJSON_ArrayForEach(e, c->extra) fprintf(f, "#SBATCH %s\n", e->valuestring);
    // srun does not take the batch step's --cpus-per-task on every Slurm version: say it again
    if (c->cpus_per_task) fprintf(f, "export SRUN_CPUS_PER_TASK=%d\n", c->cpus_per_task);
    fputs("args=(", f);
    for (int i = 0; argv[i]; i++) fputc(' ', f), put_quoted(f, argv[i]);
    fputs(" )\n", f);
    if (resume_if) {  // a job Slurm requeued (preemption, a node lost) continues from its checkpoint
        fputs("[ -f ", f), put_quoted(f, resume_if), fputs(" ] && args+=(--resume)\n", f);
    }
    // more than one rank: srun starts them, joined over PMIx where srun has it and over TCP elsewhere (rank 0's
    // address in a file in the stage's output directory); a rank that dies ends the rest at once
    if (ranks * c->nodes > 1)
        fputs("mpi=none\nsrun --mpi=list 2>&1 | grep -qw pmix && mpi=pmix\nexec srun --mpi=\"$mpi\" --kill-on-bad-exit=1 \"${args[@]}\"\n",
              f);
    else
        fputs("exec \"${args[@]}\"\n", f);
    return ld_atomic_commit(f, tmp, script, 1);
}

int slurm_submit(const SlurmConfig *c, const char *name, const char *script, const char *log, int ranks, char *const argv[],
                 const char *resume_if, SlurmJob *job) {
    if (write_script(c, name, script, log, ranks, argv, resume_if)) return -1;
    char out[4096];
    char *sb[] = {"sbatch", "--parsable", (char *)script, NULL};
    int rc = run_cmd(sb, out, sizeof out);
    if (rc) {
        if (rc > 0) ld_set_error("sbatch %s failed (exit %d): %s", script, rc, out);
        return -1;
    }
    if (slurm_parse_job_id(out, job->id, sizeof job->id)) {
        ld_set_error("sbatch %s answered '%s', with no job id", script, out);
        return -1;
    }
    slurm_log_path(log, job->id, job->log, sizeof job->log);
    return 0;
}

int slurm_parse_job_id(const char *out, char *id, size_t cap) {
    const char *found = NULL;  // the last such line: a site's job_submit plugin may add warnings around it
    size_t found_len = 0;
    for (const char *line = out; *line; line += strcspn(line, "\n"), line += *line == '\n') {
        size_t len = strcspn(line, ";\n"), digits = strspn(line, "0123456789");
        if (len && digits == len && len < cap) found = line, found_len = len;
    }
    if (!found) return -1;
    snprintf(id, cap, "%.*s", (int)found_len, found);
    return 0;
}

// A command's failure that says the job is unknown (it ended long ago): 0; -1 with an error for any other (the
// controller is down or busy: the state is not known, not "ended"); -2 when the command could not run at all.
static int unknown_job(int rc, const char *cmd, const char *out) {
    if (rc < 0) return -2;
    if (strstr(out, "Invalid job id")) return 0;
    ld_set_error("%s: %s", cmd, out);
    return -1;
}

void slurm_parse_state(const char *out, char *state, size_t cap) {
    state[0] = 0;
    for (const char *line = out; *line; line += strcspn(line, "\n"), line += *line == '\n') {
        size_t len = strcspn(line, " \n"), caps = strspn(line, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
        if (len && caps == len && (line[len] == '\n' || line[len] == 0 || line[len] == ' ')) {
            snprintf(state, cap, "%.*s", (int)len, line);
            return;
        }
    }
}

// squeue's state while the job is queued or running, then scontrol's "JobState=X", then sacct's (where
// accounting is on): X, or "" when none of them knows the job.
int slurm_state(const char *id, char *state, size_t cap) {
    char out[8192];
    state[0] = 0;
    char *sq[] = {"squeue", "-h", "-j", (char *)id, "-o", "%T", NULL};
    int rc = run_cmd(sq, out, sizeof out), u;
    if (rc == 0 && (slurm_parse_state(out, state, cap), state[0])) return 0;
    if (rc && (u = unknown_job(rc, "squeue", out))) return u;
    char *sc[] = {"scontrol", "show", "job", (char *)id, NULL};
    const char *js;
    rc = run_cmd(sc, out, sizeof out);
    if (rc == 0 && (js = strstr(out, "JobState="))) {
        js += 9;
        snprintf(state, cap, "%.*s", (int)strcspn(js, " \n"), js);
        return 0;
    }
    if (rc && (u = unknown_job(rc, "scontrol", out))) return u;
    char *sa[] = {"sacct", "-n", "-X", "-P", "-j", (char *)id, "-o", "State", NULL};
    if (run_cmd(sa, out, sizeof out) == 0) slurm_parse_state(out, state, cap);  // "CANCELLED by 0" -> CANCELLED
    return 0;
}

enum { SLURM_SILENCE_S = 1800 };  // how long a Slurm that does not answer is waited out
static volatile sig_atomic_t g_stop;
static void on_stop(int sig) { g_stop = sig; }

// The last lines of the job's log, for an error.
static void log_tail(const char *path, char *out, size_t cap) {
    size_t n;
    char *txt = ld_read_file(path, &n);
    out[0] = 0;
    if (!txt) {
        snprintf(out, cap, "(no log at %s)", path);
        return;
    }
    const char *p = txt + n;
    for (int lines = 0; p > txt && lines < 8; p--)
        if (p[-1] == '\n' && p != txt + n) lines++;
    snprintf(out, cap, "%s", p);
    free(txt);
}

static int cancel(const SlurmJob *job, int sig) {
    char out[1024];
    char *sc[] = {"scancel", (char *)job->id, NULL};
    run_cmd(sc, out, sizeof out);
    ld_set_error("stopped by signal %d: cancelled Slurm job %s", sig, job->id);
    return -1;
}

int slurm_wait(const SlurmJob *job, double poll_s, const char *what) {
    struct sigaction sa = {.sa_handler = on_stop}, old_term, old_int;
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGTERM, &sa, &old_term), sigaction(SIGINT, &sa, &old_int);
    char state[64], last[64] = "", tail[2048], trouble[512] = "";
    int rc = -1;
    double silent_since = 0;  // when Slurm stopped answering (0: it answers)
    for (;;) {
        int got = g_stop ? -1 : slurm_state(job->id, state, sizeof state);
        if (g_stop) {  // before the state: a Ctrl-C also ends the squeue it interrupted
            rc = cancel(job, g_stop);
            break;
        }
        if (got == -2) break;  // its commands cannot run here
        if (got && !silent_since) silent_since = ld_time_s();
        if (!got) silent_since = 0;
        if (got && ld_time_s() - silent_since > SLURM_SILENCE_S) {
            ld_set_error("%s: Slurm has not answered for %.0f minutes (%s); job %s may still run: rerun to attach to it", what,
                         SLURM_SILENCE_S / 60.0, trouble, job->id);
            break;
        }
        if (got && strcmp(trouble, ld_last_error())) {  // Slurm is not answering: the job's state is unknown, not ended
            snprintf(trouble, sizeof trouble, "%s", ld_last_error());
            fprintf(stderr, "run: %s: Slurm does not answer (%s); asking again every %g s\n", what, trouble, poll_s);
        }
        if (!got && strcmp(state, last)) {
            fprintf(stderr, "run: %s: Slurm job %s %s\n", what, job->id, state[0] ? state : "(no longer known to Slurm)");
            snprintf(last, sizeof last, "%s", state);
        }
        if (!got && !strcmp(state, "COMPLETED")) {
            rc = 0;
            break;
        }
        if (!got && !slurm_state_active(state)) {
            log_tail(job->log, tail, sizeof tail);
            ld_set_error("%s: Slurm job %s ended %s; the end of its log %s:\n%s", what, job->id, state[0] ? state : "unknown to Slurm",
                         job->log, tail);
            break;
        }
        for (double slept = 0; slept < poll_s && !g_stop; slept += 0.1) nanosleep(&(struct timespec){0, 100000000}, NULL);
    }
    sigaction(SIGTERM, &old_term, NULL), sigaction(SIGINT, &old_int, NULL);
    return rc;
}
