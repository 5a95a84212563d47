// defines: Dist, the ranks of a data-parallel run — where this process stands (from its launcher: mpirun, srun,
// or RANK/WORLD_SIZE) and the collectives over host memory that training and batch inference need, over MPI or
// TCP (dist_transport.h). One rank needs neither: every collective is then the identity. Every collective has a
// deadline: a rank that died or stopped answering ends the wait with an error instead of a hang.
#pragma once
#include <stddef.h>

typedef struct {
    int rank, world;  // this process's rank of world
    int local_rank, local_world;  // among the ranks on this machine (which GPU is this rank's)
    char launcher[16];  // "none", "mpirun", "srun", "mpiexec" or "env" (RANK/WORLD_SIZE)
} DistPlace;

// Where the environment puts this process: OMPI_COMM_WORLD_* (mpirun), SLURM_PROCID / SLURM_STEP_NUM_TASKS /
// SLURM_LOCALID (a task of srun; not the batch script itself), PMI_RANK / PMI_SIZE (MPICH's mpiexec), or RANK /
// WORLD_SIZE / LOCAL_RANK. 0, or -1 with an
// error naming the variable that makes no sense.
int dist_place_from_env(DistPlace *p);

typedef struct Dist Dist;  // NULL stands for one rank in every function below

typedef struct {
    double timeout_s;  // bounds every collective's wait for the other ranks (--dist-timeout)
    // How the ranks meet (--dist-init): NULL or "auto", "mpi", "tcp://HOST:PORT" (rank 0 listens there) or
    // "file:PATH" (rank 0 writes where it listens into PATH, on a filesystem every rank sees)
    const char *init;
    const char *dir;  // auto's rendezvous file goes here when nothing else serves (the run's output directory)
} DistOptions;

// Joins the run the environment describes. By default ranks that mpirun or srun --mpi=pmix started meet over MPI
// (when built with it); others over TCP, finding rank 0 at MASTER_ADDR:MASTER_PORT (torchrun's variables) or
// through a file in o->dir (srun without PMIx: every rank sees the output directory). NULL with an error.
Dist *dist_open(const DistOptions *o);
const DistPlace *dist_place(const Dist *d);
double dist_timeout_s(const Dist *d);  // the deadline dist_open was given
// --gpus asked for the device's collectives even on one rank (NCCL with a world of one: what `--gpus 1` costs
// against no NCCL at all is then measurable).
void dist_want_device_collectives(Dist *d);
int dist_device_collectives(const Dist *d);  // 1 when asked for, or more than one rank
// This rank's GPU: its local rank's when the machine has a GPU for each of its ranks, or the one GPU it sees when
// the launcher gave each rank its own (srun --gpus-per-task sets CUDA_VISIBLE_DEVICES). -1 with an error when
// there is none, or fewer than the machine's ranks.
int dist_local_gpu(const Dist *d);
// In place over every rank: x[n] becomes the elementwise sum. `what` names the collective in a timeout's error.
// 0, or -1 with an error.
int dist_sum_f32(Dist *d, float *x, size_t n, const char *what);
int dist_sum_f64(Dist *d, double *x, size_t n, const char *what);
// The chunk of n elements that rank c of world holds in a reduce-scatter and gives in an all-gather: [lo, hi) =
// [c·n/world, (c+1)·n/world).
void dist_chunk(size_t n, int world, int c, size_t *lo, size_t *hi);
// In place: this rank's chunk of x[n] becomes the elementwise sum over every rank (the rest of x is left
// undefined); then, after the chunk was updated, every rank's chunk to every rank. Together they are ZeRO's pair:
// each rank updates only its chunk. 0, or -1 with an error.
int dist_reduce_scatter_f32(Dist *d, float *x, size_t n, const char *what);
int dist_all_gather_f32(Dist *d, float *x, size_t n, const char *what);
// Every rank arrives, with no deadline: for the phases whose length differs between ranks by design (loading,
// rank 0 writing a checkpoint or the result, each rank's share of a batch of answers), so the collectives after
// them start together and their deadline measures a hung rank, not the others' work. A rank that dies meanwhile
// is the launcher's to end (mpirun; srun --kill-on-bad-exit). 0, or -1 with an error.
int dist_wait_for_all(Dist *d, const char *what);
// Rank 0's bytes[n] to every rank. 0, or -1 with an error.
int dist_bcast(Dist *d, void *bytes, size_t n, const char *what);
// Every rank's bytes (n may differ) to rank 0: *all (heap; rank 0 only) holds them in rank order, each[r] their
// lengths (world entries; rank 0 only). 0, or -1 with an error.
int dist_gather(Dist *d, const void *bytes, size_t n, char **all, size_t *each, const char *what);
// Ends this rank's part after the run (MPI_Finalize waits for every rank).
void dist_close(Dist *d);
// After an error: ends every rank of the run now (MPI_Abort; the launcher stops the rest), exiting with `code`.
// With one rank, just exits.
void dist_abort(Dist *d, int code);

// What this build's ranks can meet over: "MPI or TCP, and NCCL", "MPI or TCP", "TCP, and NCCL" or "TCP".
const char *dist_built_with(void);
const char *dist_transport_name(const Dist *d);  // "MPI", "TCP", or "none" (one rank)
int dist_has_mpi(void);  // 1 when this build's ranks can meet over MPI
// Starts `ranks` ranks of this program on this machine in place of this process (each given args, the
// arguments after the program's name): under mpirun, or where there is none (or no MPI in this build) as its
// own children meeting over TCP. Their exit status becomes this process's: non-zero when a rank failed, after
// the rest were ended. Returns only on failure: -1 with an error.
int dist_launch(int ranks, char *const *args);
