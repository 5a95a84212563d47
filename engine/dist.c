#include "dist.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda_device.h"
#include "util.h"

#ifdef LLAMADUO_HAVE_MPI
#include <mpi.h>
#endif

struct Dist {
    DistPlace at;
    double timeout_s;
    int device_collectives;  // dist_want_device_collectives
    int mpi;  // MPI was initialised (more than one rank)
};

// A variable that holds an integer: 1 (and *v), 0 when unset, -1 with an error when it holds something else.
static int env_int(const char *name, int *v) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || *end || x < 0 || x > INT_MAX) {
        ld_set_error("%s=%s is not a rank count or a rank number", name, s);
        return -1;
    }
    *v = (int)x;
    return 1;
}

// The launcher's variables for (rank, world, local rank): 1 when its world size is set, 0 when not, -1 on an error.
static int read_triplet(DistPlace *p, const char *launcher, const char *rank, const char *world, const char *local) {
    int w = 0, r = 0, l = -1, got = env_int(world, &w);
    if (got <= 0) return got;
    if (env_int(rank, &r) < 0 || env_int(local, &l) < 0) return -1;
    if (w < 1 || r >= w) {
        ld_set_error("%s=%d with %s=%d: the rank must be below the rank count", rank, r, world, w);
        return -1;
    }
    p->rank = r, p->world = w, p->local_rank = l >= 0 ? l : r, p->local_world = l >= 0 ? 0 : w;
    snprintf(p->launcher, sizeof p->launcher, "%s", launcher);
    return 1;
}

int dist_place_from_env(DistPlace *p) {
    *p = (DistPlace){0, 1, 0, 1, "none"};
    // srun's tasks carry the step's task count; the batch script itself (SLURM_NTASKS alone) is one process
    int got = read_triplet(p, "mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK");
    if (!got) got = read_triplet(p, "srun", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID");
    if (!got) got = read_triplet(p, "mpiexec", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID");  // MPICH's and Intel MPI's hydra
    if (!got) got = read_triplet(p, "env", "RANK", "WORLD_SIZE", "LOCAL_RANK");
    if (got < 0) return -1;
    int lw;
    if (got > 0 && p->local_world == 0) p->local_world = env_int("LOCAL_WORLD_SIZE", &lw) > 0 ? lw : p->world;
    return 0;
}

// dist_gather of one rank: its own bytes.
static int gather_alone(const void *bytes, size_t n, char **all, size_t *each) {
    *all = ld_xmalloc(n ? n : 1), each[0] = n;
    memcpy(*all, bytes, n);
    return 0;
}

const DistPlace *dist_place(const Dist *d) {
    static const DistPlace alone = {0, 1, 0, 1, "none"};
    return d ? &d->at : &alone;
}
double dist_timeout_s(const Dist *d) { return d ? d->timeout_s : 0; }
void dist_want_device_collectives(Dist *d) { d->device_collectives = 1; }
int dist_device_collectives(const Dist *d) { return d && (d->device_collectives || d->at.world > 1); }

const char *dist_built_with(void) {
#if defined(LLAMADUO_HAVE_MPI) && defined(LLAMADUO_HAVE_NCCL)
    return "MPI and NCCL";
#elif defined(LLAMADUO_HAVE_MPI)
    return "MPI";
#else
    return "nothing (one process only)";
#endif
}

int dist_local_gpu(const Dist *d) {
    const DistPlace *at = dist_place(d);
    int n = ld_cuda_device_count();
    if (n <= 0) {
        ld_set_error("no CUDA device found");
        return -1;
    }
    if (at->local_world <= 1) return ld_cuda_current_device();
    if (n >= at->local_world) return at->local_rank;
    if (n == 1 && getenv("CUDA_VISIBLE_DEVICES")) return 0;
    ld_set_error("%d ranks on this machine, but it has %d GPU%s: one rank per GPU", at->local_world, n, n == 1 ? "" : "s");
    return -1;
}

#ifndef LLAMADUO_HAVE_MPI

Dist *dist_open(double timeout_s) {
    DistPlace at;
    if (dist_place_from_env(&at)) return NULL;
    if (at.world > 1) {
        ld_set_error("%s started %d ranks, but this build has no MPI (libopenmpi-dev was not found when it was configured): "
                     "it trains on one process only",
                     at.launcher, at.world);
        return NULL;
    }
    Dist *d = ld_xcalloc(1, sizeof *d);
    d->at = at, d->timeout_s = timeout_s;
    return d;
}
int dist_sum_f32(Dist *d, float *x, size_t n, const char *what) { return (void)d, (void)x, (void)n, (void)what, 0; }
int dist_sum_f64(Dist *d, double *x, size_t n, const char *what) { return (void)d, (void)x, (void)n, (void)what, 0; }
int dist_bcast(Dist *d, void *bytes, size_t n, const char *what) { return (void)d, (void)bytes, (void)n, (void)what, 0; }
int dist_wait_for_all(Dist *d, const char *what) { return (void)d, (void)what, 0; }
int dist_gather(Dist *d, const void *bytes, size_t n, char **all, size_t *each, const char *what) {
    (void)d, (void)what;
    return gather_alone(bytes, n, all, each);
}
void dist_close(Dist *d) { free(d); }
void dist_abort(Dist *d, int code) {
    (void)d;
    exit(code);
}

#else

static int mpi_failed(const Dist *d, int code, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, msg, &len);
    ld_set_error("%s: MPI: %.*s", what, len, msg);
    return -1;
}

// MPI_Init and MPI_Finalize wait for every rank with no deadline of their own: an alarm gives them one. The
// message is written before the alarm is set (a signal handler may only write and exit).
static char g_alarm_msg[256];
static void on_alarm(int sig) {
    (void)sig;
    ssize_t rc = write(2, g_alarm_msg, strlen(g_alarm_msg));
    (void)rc;
    _exit(1);
}
static void deadline(const Dist *d, const char *what) {
    if (!what) {
        alarm(0);
        signal(SIGALRM, SIG_DFL);
        return;
    }
    snprintf(g_alarm_msg, sizeof g_alarm_msg,
             "llamaduo: error: rank %d: %s waited %.0f s for the other ranks (--dist-timeout): one of them has died or stopped answering\n",
             d->at.rank, what, d->timeout_s);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)d->timeout_s + 1);
}

// Waits for a started collective, at most timeout_s (0: no deadline): spinning first (a step's collectives are
// short), then napping so a rank that waits on a slow one leaves its cores to the work.
static int wait_within(Dist *d, MPI_Request *req, double timeout_s, const char *what) {
    double t0 = ld_time_s();
    for (long polls = 0;; polls++) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_failed(d, rc, what);
        if (done) return 0;
        if (timeout_s > 0 && ld_time_s() - t0 > timeout_s) {
            ld_set_error("%s waited %.0f s for the other ranks (--dist-timeout): one of them has died or stopped answering", what,
                         timeout_s);
            return -1;
        }
        if (polls > 10000) nanosleep(&(struct timespec){0, polls > 100000 ? 5000000 : 200000}, NULL);
    }
}

static int wait_for(Dist *d, MPI_Request *req, const char *what) { return wait_within(d, req, d->timeout_s, what); }

int dist_wait_for_all(Dist *d, const char *what) {
    if (!d || !d->mpi) return 0;
    MPI_Request req;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return mpi_failed(d, rc, what);
    return wait_within(d, &req, 0, what);
}

Dist *dist_open(double timeout_s) {
    Dist *d = ld_xcalloc(1, sizeof *d);
    d->timeout_s = timeout_s;
    if (dist_place_from_env(&d->at)) return free(d), NULL;
    if (d->at.world == 1) return d;
    if (!strcmp(d->at.launcher, "env")) {
        ld_set_error("RANK/WORLD_SIZE say %d ranks, but the ranks meet over MPI: start them with mpirun, srun --mpi=pmix, or "
                     "llamaduo train --ranks N",
                     d->at.world);
        return free(d), NULL;
    }
    if (!strcmp(d->at.launcher, "srun") && !getenv("PMIX_RANK") && !getenv("PMI_RANK")) {  // MPI would abort on its own
        ld_set_error("srun started %d tasks without a process manager MPI can join: use srun --mpi=pmix (or MpiDefault=pmix)",
                     d->at.world);
        return free(d), NULL;
    }
    int provided, world, rank;
    deadline(d, "joining the run (MPI_Init)");
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    deadline(d, NULL);
    d->mpi = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_size(MPI_COMM_WORLD, &world), MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (world != d->at.world || rank != d->at.rank) {  // srun without PMIx: every task is an MPI world of its own
        ld_set_error("%s started %d ranks, but MPI sees %d (rank %d): the launcher and MPI do not meet (with srun, use "
                     "--mpi=pmix)",
                     d->at.launcher, d->at.world, world, rank);
        dist_close(d);
        return NULL;
    }
    MPI_Comm local;  // the ranks that share this machine, whatever the launcher said
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &d->at.local_rank), MPI_Comm_size(local, &d->at.local_world);
    MPI_Comm_free(&local);
    return d;
}

// MPI counts are ints: a long buffer goes in pieces.
#define MPI_PIECE ((size_t)1 << 30)

static int sum(Dist *d, void *x, size_t n, MPI_Datatype type, size_t size, const char *what) {
    if (!d || !d->mpi) return 0;
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        MPI_Request req;
        int len = (int)(n - off < MPI_PIECE ? n - off : MPI_PIECE);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)x + off * size, len, type, MPI_SUM, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_failed(d, rc, what);
        if (wait_for(d, &req, what)) return -1;
    }
    return 0;
}

int dist_sum_f32(Dist *d, float *x, size_t n, const char *what) { return sum(d, x, n, MPI_FLOAT, sizeof(float), what); }
int dist_sum_f64(Dist *d, double *x, size_t n, const char *what) { return sum(d, x, n, MPI_DOUBLE, sizeof(double), what); }

int dist_bcast(Dist *d, void *bytes, size_t n, const char *what) {
    if (!d || !d->mpi) return 0;
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        MPI_Request req;
        int rc = MPI_Ibcast((char *)bytes + off, (int)(n - off < MPI_PIECE ? n - off : MPI_PIECE), MPI_BYTE, 0, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_failed(d, rc, what);
        if (wait_for(d, &req, what)) return -1;
    }
    return 0;
}

int dist_gather(Dist *d, const void *bytes, size_t n, char **all, size_t *each, const char *what) {
    *all = NULL;
    if (!d || !d->mpi) return gather_alone(bytes, n, all, each);
    int W = d->at.world, root = d->at.rank == 0, rc;
    uint64_t mine = n, *lens = root ? ld_xcalloc((size_t)W, sizeof *lens) : NULL;
    int *counts = root ? ld_xcalloc((size_t)W, sizeof(int)) : NULL, *offs = root ? ld_xcalloc((size_t)W, sizeof(int)) : NULL;
    MPI_Request req;
    rc = MPI_Igather(&mine, 1, MPI_UINT64_T, lens, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS ? mpi_failed(d, rc, what) : wait_for(d, &req, what)) goto fail;
    size_t total = 0;
    for (int r = 0; root && r < W; r++) {
        if (total + lens[r] > INT_MAX) {
            ld_set_error("%s: more than 2 GiB to gather", what);
            goto fail;  // the others' gatherv then times out: this rank ends the run
        }
        counts[r] = (int)lens[r], offs[r] = (int)total, each[r] = lens[r], total += lens[r];
    }
    if (root) *all = ld_xmalloc(total ? total : 1);
    if (n > INT_MAX) {
        ld_set_error("%s: more than 2 GiB to gather", what);
        goto fail;
    }
    rc = MPI_Igatherv(bytes, (int)n, MPI_BYTE, *all, counts, offs, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS ? mpi_failed(d, rc, what) : wait_for(d, &req, what)) goto fail;
    free(lens), free(counts), free(offs);
    return 0;
fail:
    free(lens), free(counts), free(offs), free(*all);
    *all = NULL;
    return -1;
}

void dist_close(Dist *d) {
    if (!d) return;
    if (d->mpi) {
        deadline(d, "leaving the run (MPI_Finalize)");
        MPI_Finalize();
        deadline(d, NULL);
    }
    free(d);
}

void dist_abort(Dist *d, int code) {
    if (d && d->mpi) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#endif
