#include "dist.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cuda_device.h"
#include "dist_transport.h"
#include "util.h"

struct Dist {
    DistPlace at;
    double timeout_s;
    int device_collectives;  // dist_want_device_collectives
    const DistTransport *via;  // NULL with one rank
    void *impl;  // via's state
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
    return "MPI or TCP, and NCCL";
#elif defined(LLAMADUO_HAVE_MPI)
    return "MPI or TCP";
#elif defined(LLAMADUO_HAVE_NCCL)
    return "TCP, and NCCL";
#else
    return "TCP";
#endif
}
const char *dist_transport_name(const Dist *d) { return d && d->via ? d->via->name : "none"; }

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

// This launch's id, the same on each of its ranks and different for the next one (Slurm's job, step and restart
// count; torchrun's run id; PMIx's namespace; or one the user sets): a rendezvous file or a hello that carries
// another id is a stale one's. "" when the environment names none.
static void launch_id(char *out, size_t cap) {
    const char *job = getenv("SLURM_JOB_ID"), *step = getenv("SLURM_STEP_ID"), *again = getenv("SLURM_RESTART_COUNT");
    const char *mine = getenv("LLAMADUO_RUN_ID"), *torch = getenv("TORCHELASTIC_RUN_ID"), *pmix = getenv("PMIX_NAMESPACE");
    if (mine && *mine)
        snprintf(out, cap, "user:%s", mine);  // a word: the rendezvous file holds it as one
    else if (job && *job)
        snprintf(out, cap, "slurm:%s.%s.%s", job, step ? step : "", again ? again : "0");
    else if (torch && *torch)
        snprintf(out, cap, "torchrun:%s", torch);
    else if (pmix && *pmix)
        snprintf(out, cap, "pmix:%s", pmix);
    else
        out[0] = 0;
    for (char *c = out; *c; c++)
        if (*c <= ' ' || *c > '~') *c = '_';
}

// "tcp://HOST:PORT" (HOST may be [v6]) into rv; `from` names where it came from in the error. 0, or -1 with an error.
static int parse_tcp(const char *url, const char *from, DistRendezvous *rv) {
    const char *hp = url + strlen("tcp://"), *colon = strrchr(hp, ':');
    size_t hn = colon ? (size_t)(colon - hp) : 0;
    if (hn && hp[0] == '[' && hp[hn - 1] == ']') hp++, hn -= 2;
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!hn || hn >= sizeof rv->host || !colon || *end || port < 1 || port > 65535) {
        ld_set_error("%s %s: expected tcp://HOST:PORT (a port from 1 to 65535)", from, url);
        return -1;
    }
    memcpy(rv->host, hp, hn), rv->host[hn] = 0;
    snprintf(rv->port, sizeof rv->port, "%ld", port);
    return 0;
}

// How these ranks meet: "mpi", or a TCP rendezvous in rv. Asked for (--dist-init, LLAMADUO_DIST_INIT) or, by
// default, MPI for the launchers MPI joins, then torchrun's MASTER_ADDR/MASTER_PORT, then a file in `dir`.
// 1 for MPI, 0 for TCP, -1 with an error.
static int choose(const DistPlace *at, const DistOptions *o, DistRendezvous *rv) {
    // the ranks llamaduo started itself meet as it told them, whatever flag they were passed on
    const char *env = getenv("LLAMADUO_DIST_INIT"), *init = o->init && *o->init && !getenv("LLAMADUO_LAUNCHED") ? o->init : env;
    const char *addr = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT"), *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    char next_port[24];
    if (port && agent && !strcasecmp(agent, "true")) {  // torchrun's agent holds its store on MASTER_PORT: rank 0 takes the next
        snprintf(next_port, sizeof next_port, "%ld", strtol(port, NULL, 10) + 1);
        port = next_port;
    }
    if (getenv("LLAMADUO_MASTER_PORT")) port = getenv("LLAMADUO_MASTER_PORT");
    launch_id(rv->launch, sizeof rv->launch);
    char url[4400];
    const char *from = "--dist-init";
    if (!init || !*init || !strcmp(init, "auto")) {
        int srun_pmi = !strcmp(at->launcher, "srun") && (getenv("PMIX_RANK") || getenv("PMI_RANK"));
        int mpi_joins = !strcmp(at->launcher, "mpirun") || !strcmp(at->launcher, "mpiexec") || srun_pmi;
#ifdef LLAMADUO_HAVE_MPI
        if (mpi_joins) return 1;
#endif
        if (addr && *addr && port && *port) {
            from = getenv("LLAMADUO_MASTER_PORT") ? "MASTER_ADDR and LLAMADUO_MASTER_PORT" : "MASTER_ADDR and MASTER_PORT";
            snprintf(url, sizeof url, "tcp://%s%s%s:%s", strchr(addr, ':') && addr[0] != '[' ? "[" : "", addr,
                     strchr(addr, ':') && addr[0] != '[' ? "]" : "", port);
        } else if (o->dir && *o->dir && rv->launch[0])
            snprintf(url, sizeof url, "file:%s/.llamaduo-rendezvous", o->dir);
        else {
            ld_set_error("%s started %d ranks, but they have no way to meet: %s", at->launcher, at->world,
                         mpi_joins
                             ? "this build has no MPI; set MASTER_ADDR and MASTER_PORT, or --dist-init file:PATH on a filesystem every "
                               "rank sees"
                             : "start them with mpirun or srun --mpi=pmix, set MASTER_ADDR and MASTER_PORT (rank 0's host and a free "
                               "port), or --dist-init file:PATH on a filesystem every rank sees");
            return -1;
        }
        init = url;
    }
    if (!strcmp(init, "mpi")) return 1;
    if (!strncmp(init, "tcp://", 6)) return parse_tcp(init, from, rv);
    if (!strncmp(init, "file:", 5) && init[5]) {
        if (!rv->launch[0]) {  // rank 0's file from an earlier launch would be read as this one's
            ld_set_error(
                "--dist-init %s: a rendezvous file needs this launch's id to tell it from an earlier launch's: set "
                "LLAMADUO_RUN_ID to one value on every rank (Slurm and torchrun set theirs)",
                init);
            return -1;
        }
        if (strlen(init + 5) >= sizeof rv->file) return ld_set_error("--dist-init: the file's path is too long"), -1;
        snprintf(rv->file, sizeof rv->file, "%s", init + 5);
        return 0;
    }
    ld_set_error("--dist-init %s: expected auto, mpi, tcp://HOST:PORT or file:PATH", init);
    return -1;
}

Dist *dist_open(const DistOptions *o) {
    Dist *d = ld_xcalloc(1, sizeof *d);
    d->timeout_s = o->timeout_s;
    if (dist_place_from_env(&d->at)) return free(d), NULL;
    if (d->at.world == 1) return d;
    DistRendezvous rv = {0};
    int mpi = choose(&d->at, o, &rv);
    if (mpi < 0) return free(d), NULL;
    if (mpi && !strcmp(d->at.launcher, "srun") && !getenv("PMIX_RANK") && !getenv("PMI_RANK")) {  // MPI would abort on its own
        ld_set_error(
            "srun started %d tasks without a process manager MPI can join: use srun --mpi=pmix (or MpiDefault=pmix), "
            "or let them meet over TCP (--dist-init)",
            d->at.world);
        return free(d), NULL;
    }
    d->via = mpi ? &dist_mpi : &dist_tcp;
    d->impl = mpi ? dist_mpi_open(&d->at, d->timeout_s) : dist_tcp_open(&d->at, &rv, d->timeout_s);
    if (!d->impl) return free(d), NULL;
    return d;
}

int dist_sum_f32(Dist *d, float *x, size_t n, const char *what) {
    return d && d->via ? d->via->sum(d->impl, x, n, 0, d->timeout_s, what) : 0;
}
int dist_sum_f64(Dist *d, double *x, size_t n, const char *what) {
    return d && d->via ? d->via->sum(d->impl, x, n, 1, d->timeout_s, what) : 0;
}
void dist_chunk(size_t n, int world, int c, size_t *lo, size_t *hi) {
    *lo = (size_t)c * n / (size_t)world, *hi = (size_t)(c + 1) * n / (size_t)world;
}
int dist_reduce_scatter_f32(Dist *d, float *x, size_t n, const char *what) {
    return d && d->via ? d->via->reduce_scatter(d->impl, x, n, d->timeout_s, what) : 0;
}
int dist_all_gather_f32(Dist *d, float *x, size_t n, const char *what) {
    return d && d->via ? d->via->all_gather(d->impl, x, n, d->timeout_s, what) : 0;
}
int dist_wait_for_all(Dist *d, const char *what) { return d && d->via ? d->via->barrier(d->impl, 0, what) : 0; }
int dist_bcast(Dist *d, void *bytes, size_t n, const char *what) {
    return d && d->via ? d->via->bcast(d->impl, bytes, n, d->timeout_s, what) : 0;
}
int dist_gather(Dist *d, const void *bytes, size_t n, char **all, size_t *each, const char *what) {
    *all = NULL;
    if (!d || !d->via) return gather_alone(bytes, n, all, each);
    return d->via->gather(d->impl, bytes, n, all, each, d->timeout_s, what);
}

void dist_close(Dist *d) {
    if (d && d->via) d->via->close(d->impl, d->timeout_s);
    free(d);
}

void dist_abort(Dist *d, int code) {
    if (d && d->via) d->via->abort(d->impl, code);
    exit(code);
}
