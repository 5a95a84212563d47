// defines: dist_mpi, the ranks of a run meeting over MPI (mpirun, mpiexec, srun --mpi=pmix): nonblocking
// collectives polled against a deadline, an alarm around MPI_Init and MPI_Finalize, MPI_Abort on an error.
#include "dist_transport.h"

#include "util.h"

#ifndef LLAMADUO_HAVE_MPI

void *dist_mpi_open(DistPlace *at, double timeout_s) {
    (void)timeout_s;
    ld_set_error(
        "%s started %d ranks that meet over MPI, but this build has no MPI (libopenmpi-dev was not found when it was "
        "configured): give them a TCP rendezvous (MASTER_ADDR and MASTER_PORT, or --dist-init)",
        at->launcher, at->world);
    return NULL;
}
const DistTransport dist_mpi = {"MPI", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
int dist_has_mpi(void) { return 0; }

#else

#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int rank;
} Mpi;

static int mpi_failed(int code, const char *what) {
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
static void deadline(int rank, double timeout_s, const char *what) {
    if (!what) {
        alarm(0);
        signal(SIGALRM, SIG_DFL);
        return;
    }
    snprintf(g_alarm_msg, sizeof g_alarm_msg,
             "llamaduo: error: rank %d: %s waited %.0f s for the other ranks (--dist-timeout): one of them has died or stopped answering\n",
             rank, what, timeout_s);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)timeout_s + 1);
}

// Waits for a started collective, at most timeout_s (0: no deadline): spinning first (a step's collectives are
// short), then napping so a rank that waits on a slow one leaves its cores to the work.
static int wait_within(MPI_Request *req, double timeout_s, const char *what) {
    double t0 = ld_time_s();
    for (long polls = 0;; polls++) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, what);
        if (done) return 0;
        if (timeout_s > 0 && ld_time_s() - t0 > timeout_s) {
            ld_set_error("%s waited %.0f s for the other ranks (--dist-timeout): one of them has died or stopped answering", what,
                         timeout_s);
            return -1;
        }
        if (polls > 10000) nanosleep(&(struct timespec){0, polls > 100000 ? 5000000 : 200000}, NULL);
    }
}

void *dist_mpi_open(DistPlace *at, double timeout_s) {
    int provided, world, rank;
    deadline(at->rank, timeout_s, "joining the run (MPI_Init)");
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    deadline(at->rank, timeout_s, NULL);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_size(MPI_COMM_WORLD, &world), MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (world != at->world || rank != at->rank) {  // srun without PMIx: every task is an MPI world of its own
        ld_set_error(
            "%s started %d ranks, but MPI sees %d (rank %d): the launcher and MPI do not meet (with srun, use "
            "--mpi=pmix, or a TCP rendezvous)",
            at->launcher, at->world, world, rank);
        deadline(at->rank, timeout_s, "leaving the run (MPI_Finalize)");
        MPI_Finalize();
        deadline(at->rank, timeout_s, NULL);
        return NULL;
    }
    MPI_Comm local;  // the ranks that share this machine, whatever the launcher said
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &at->local_rank), MPI_Comm_size(local, &at->local_world);
    MPI_Comm_free(&local);
    Mpi *m = ld_xcalloc(1, sizeof *m);
    m->rank = rank;
    return m;
}

// MPI counts are ints: a long buffer goes in pieces.
#define MPI_PIECE ((size_t)1 << 30)

static int mpi_sum(void *impl, void *x, size_t n, int f64, double timeout_s, const char *what) {
    (void)impl;
    MPI_Datatype type = f64 ? MPI_DOUBLE : MPI_FLOAT;
    size_t size = f64 ? sizeof(double) : sizeof(float);
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        MPI_Request req;
        int len = (int)(n - off < MPI_PIECE ? n - off : MPI_PIECE);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)x + off * size, len, type, MPI_SUM, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, what);
        if (wait_within(&req, timeout_s, what)) return -1;
    }
    return 0;
}

// The chunks' counts and offsets as MPI's ints: -1 with an error when a buffer is past their range.
static int chunk_counts(size_t n, int W, int **counts, int **offs, const char *what) {
    if (n > INT_MAX) return ld_set_error("%s: %zu elements, more than MPI's counts hold in one tensor", what, n), -1;
    *counts = ld_xmalloc((size_t)W * sizeof(int)), *offs = ld_xmalloc((size_t)W * sizeof(int));
    for (int c = 0; c < W; c++) {
        size_t lo, hi;
        dist_chunk(n, W, c, &lo, &hi);
        (*counts)[c] = (int)(hi - lo), (*offs)[c] = (int)lo;
    }
    return 0;
}

static int mpi_reduce_scatter(void *impl, float *x, size_t n, double timeout_s, const char *what) {
    Mpi *m = impl;
    int W, *counts, *offs, rc;
    MPI_Comm_size(MPI_COMM_WORLD, &W);
    if (chunk_counts(n, W, &counts, &offs, what)) return -1;
    float *mine = ld_xmalloc(((size_t)counts[m->rank] + 1) * sizeof(float));
    MPI_Request req;
    rc = MPI_Ireduce_scatter(x, mine, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
    rc = rc != MPI_SUCCESS ? mpi_failed(rc, what) : wait_within(&req, timeout_s, what);
    if (!rc) memcpy(x + offs[m->rank], mine, (size_t)counts[m->rank] * sizeof(float));
    free(mine), free(counts), free(offs);
    return rc;
}

static int mpi_all_gather(void *impl, float *x, size_t n, double timeout_s, const char *what) {
    (void)impl;
    int W, *counts, *offs, rc;
    MPI_Comm_size(MPI_COMM_WORLD, &W);
    if (chunk_counts(n, W, &counts, &offs, what)) return -1;
    MPI_Request req;
    rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts, offs, MPI_FLOAT, MPI_COMM_WORLD, &req);
    rc = rc != MPI_SUCCESS ? mpi_failed(rc, what) : wait_within(&req, timeout_s, what);
    free(counts), free(offs);
    return rc;
}

static int mpi_barrier(void *impl, double timeout_s, const char *what) {
    (void)impl;
    MPI_Request req;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, what);
    return wait_within(&req, timeout_s, what);
}

static int mpi_bcast(void *impl, void *bytes, size_t n, double timeout_s, const char *what) {
    (void)impl;
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        MPI_Request req;
        int rc = MPI_Ibcast((char *)bytes + off, (int)(n - off < MPI_PIECE ? n - off : MPI_PIECE), MPI_BYTE, 0, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, what);
        if (wait_within(&req, timeout_s, what)) return -1;
    }
    return 0;
}

static int mpi_gather(void *impl, const void *bytes, size_t n, char **all, size_t *each, double timeout_s, const char *what) {
    (void)impl;
    int W, rank, rc;
    MPI_Comm_size(MPI_COMM_WORLD, &W), MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int root = rank == 0;
    uint64_t mine = n, *lens = root ? ld_xcalloc((size_t)W, sizeof *lens) : NULL;
    int *counts = root ? ld_xcalloc((size_t)W, sizeof(int)) : NULL, *offs = root ? ld_xcalloc((size_t)W, sizeof(int)) : NULL;
    MPI_Request req;
    rc = MPI_Igather(&mine, 1, MPI_UINT64_T, lens, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS ? mpi_failed(rc, what) : wait_within(&req, timeout_s, what)) goto fail;
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
    if (rc != MPI_SUCCESS ? mpi_failed(rc, what) : wait_within(&req, timeout_s, what)) goto fail;
    free(lens), free(counts), free(offs);
    return 0;
fail:
    free(lens), free(counts), free(offs), free(*all);
    *all = NULL;
    return -1;
}

static void mpi_close(void *impl, double timeout_s) {
    Mpi *m = impl;
    deadline(m->rank, timeout_s, "leaving the run (MPI_Finalize)");
    MPI_Finalize();
    deadline(m->rank, timeout_s, NULL);
    free(m);
}

static void mpi_abort(void *impl, int code) {
    (void)impl;
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

const DistTransport dist_mpi = {"MPI",      mpi_sum,     mpi_reduce_scatter, mpi_all_gather, mpi_bcast,
                                mpi_gather, mpi_barrier, mpi_close,          mpi_abort};
int dist_has_mpi(void) { return 1; }

#endif
