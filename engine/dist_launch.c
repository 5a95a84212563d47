// `--ranks N` / `--gpus N` without a launcher: this process becomes `mpirun -np N <itself> <its arguments>`, or,
// where there is no mpirun (or no MPI in this build), starts the N ranks as its children, meeting over TCP.
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "util.h"

static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    char *copy = ld_xstrdup(path ? path : "/usr/bin:/bin"), *save = NULL, buf[PATH_MAX];
    int found = 0;
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        snprintf(buf, sizeof buf, "%s/%s", dir, prog);
        found = access(buf, X_OK) == 0;
    }
    free(copy);
    return found;
}

static volatile sig_atomic_t g_stop;  // SIGTERM or SIGINT to the launcher: passed on to the ranks
static void on_stop(int sig) { g_stop = sig; }

static void signal_all(const pid_t *pid, int ranks, int sig) {
    for (int r = 0; r < ranks; r++)
        if (pid[r] > 0) kill(pid[r], sig);
}

// The ranks as children: each told its place (RANK, WORLD_SIZE, LOCAL_RANK) and a rendezvous file of this
// launch (rank 0 listens on a free port, so no port is guessed). The first rank to fail ends the others, as
// mpirun does, and its status becomes this process's; a rank still there 10 s later is killed.
// Returns only on failure: -1 with an error.
static int launch_children(int ranks, const char *exe, char *const *args) {
    char dir[] = "/tmp/llamaduo-ranks-XXXXXX", init[64], id[32], n[16];
    if (!mkdtemp(dir)) return ld_set_error("cannot make a directory for the ranks' rendezvous: %s", strerror(errno)), -1;
    snprintf(init, sizeof init, "file:%s/rendezvous", dir), snprintf(id, sizeof id, "local-%d", (int)getpid()),
        snprintf(n, sizeof n, "%d", ranks);
    pid_t *pid = ld_xcalloc((size_t)ranks, sizeof *pid), parent = getpid();
    signal(SIGTERM, on_stop), signal(SIGINT, on_stop), signal(SIGCHLD, SIG_DFL);  // an inherited SIG_IGN would reap them unseen
    fflush(NULL);
    for (int r = 0; r < ranks; r++) {
        if ((pid[r] = fork()) < 0) {
            ld_set_error("cannot start rank %d: %s", r, strerror(errno));
            signal_all(pid, r, SIGKILL), rmdir(dir), free(pid);
            return -1;
        }
        if (pid[r]) continue;
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // the launcher killed: its ranks go too
        if (getppid() != parent) _exit(1);
        char rank[16];
        snprintf(rank, sizeof rank, "%d", r);
        // another launcher's variables (this shell inside srun, say) would outrank these and make a world of one
        static const char *const theirs[] = {"OMPI_COMM_WORLD_RANK",
                                             "OMPI_COMM_WORLD_SIZE",
                                             "OMPI_COMM_WORLD_LOCAL_RANK",
                                             "SLURM_PROCID",
                                             "SLURM_STEP_NUM_TASKS",
                                             "SLURM_LOCALID",
                                             "PMI_RANK",
                                             "PMI_SIZE",
                                             "MPI_LOCALRANKID",
                                             "PMIX_RANK",
                                             NULL};
        for (int i = 0; theirs[i]; i++) unsetenv(theirs[i]);
        setenv("LLAMADUO_LAUNCHED", "1", 1);
        setenv("RANK", rank, 1), setenv("LOCAL_RANK", rank, 1), setenv("WORLD_SIZE", n, 1), setenv("LOCAL_WORLD_SIZE", n, 1);
        setenv("LLAMADUO_RUN_ID", id, 1), setenv("LLAMADUO_DIST_INIT", init, 1);
        signal(SIGTERM, SIG_DFL), signal(SIGINT, SIG_DFL);
        execv(exe, args);
        _exit(127);
    }
    int code = 0, left = ranks, failing = 0;  // failing: a rank failed, and the others are to be ended
    double ending = 0;  // when the others were asked to end
    while (left) {
        int status, stop = g_stop;
        pid_t done = waitpid(-1, &status, WNOHANG);  // polled: a signal to this process is seen within 50 ms
        if (done < 0 && errno == ECHILD) break;
        if (stop && !ending) signal_all(pid, ranks, stop), ending = ld_time_s(), code = 128 + stop;
        if (done <= 0) {
            // the others are ended only once every rank already gone was reaped: those died on their own, and are
            // named (a rank killed from outside is often reaped after the rank that failed because of it)
            if (failing && !ending) signal_all(pid, ranks, SIGTERM), ending = ld_time_s();
            if (ending && ld_time_s() - ending > 10) signal_all(pid, ranks, SIGKILL);
            nanosleep(&(struct timespec){0, 50000000}, NULL);
            continue;
        }
        int r = 0;
        while (r < ranks && pid[r] != done) r++;
        if (r == ranks) continue;
        pid[r] = 0, left--;
        int failed = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        int ended_by_us = ending && (sig == SIGTERM || sig == SIGKILL || (sig && sig == g_stop));
        if (failed && !ended_by_us) {  // every failure is named: the first may not be the first reaped
            if (WIFSIGNALED(status))
                fprintf(stderr, "llamaduo: rank %d (pid %d) was killed by signal %d%s\n", r, (int)done, WTERMSIG(status),
                        ending ? "" : ": ending the other ranks");
            else
                fprintf(stderr, "llamaduo: rank %d (pid %d) exited with status %d%s\n", r, (int)done, failed,
                        ending ? "" : ": ending the other ranks");
        }
        if (failed && !failing && !ending) failing = 1, code = failed;
    }
    char file[80];
    snprintf(file, sizeof file, "%s/rendezvous", dir);
    unlink(file), rmdir(dir);
    exit(code);
}

int dist_launch(int ranks, char *const *args) {
    char exe[PATH_MAX], np[16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        ld_set_error("cannot find this program's own path to start its ranks");
        return -1;
    }
    exe[n] = 0;
    int argc = 0;
    while (args[argc]) argc++;
    const char **av = ld_xcalloc((size_t)argc + 12, sizeof *av);
    if (!dist_has_mpi() || !on_path("mpirun")) {
        av[0] = exe;
        for (int i = 0; i < argc; i++) av[i + 1] = args[i];
        launch_children(ranks, exe, (char *const *)av);
        return free(av), -1;
    }
    snprintf(np, sizeof np, "%d", ranks);
    int k = 0;
    av[k++] = "mpirun", av[k++] = "-np", av[k++] = np;
    av[k++] = "--bind-to", av[k++] = "none";  // each rank sizes its own thread pool (cores / ranks on the machine)
    av[k++] = "--oversubscribe";  // more ranks than cores is slow, not wrong (a test of two ranks on one core)
    if (geteuid() == 0) av[k++] = "--allow-run-as-root";
    av[k++] = exe;
    for (int i = 0; i < argc; i++) av[k++] = args[i];
    fflush(NULL);
    execvp("mpirun", (char *const *)av);
    ld_set_error("cannot start mpirun");
    free(av);
    return -1;
}
