// defines: DistTransport, what the ranks of a run meet over (MPI in dist_mpi.c, TCP in dist_tcp.c) behind
// dist.h's collectives, and the rendezvous messages of the TCP one (parsed from the network and a shared file:
// fuzzed).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "dist.h"

// One transport's collectives. `impl` is what its open returned. A timeout of 0 waits without a deadline (a rank
// that dies still ends the wait). Each returns 0, or -1 with an error naming `what` and, where known, the rank.
typedef struct {
    const char *name;  // "MPI" or "TCP", for `info` and progress lines
    int (*sum)(void *impl, void *x, size_t n, int f64, double timeout_s, const char *what);
    // rank r's chunk of x (dist_chunk) becomes the sum over every rank; the rest of x is left undefined
    int (*reduce_scatter)(void *impl, float *x, size_t n, double timeout_s, const char *what);
    // every rank's chunk of x to every rank
    int (*all_gather)(void *impl, float *x, size_t n, double timeout_s, const char *what);
    int (*bcast)(void *impl, void *bytes, size_t n, double timeout_s, const char *what);
    int (*gather)(void *impl, const void *bytes, size_t n, char **all, size_t *each, double timeout_s, const char *what);
    int (*barrier)(void *impl, double timeout_s, const char *what);
    void (*close)(void *impl, double timeout_s);
    void (*abort)(void *impl, int code);  // ends every rank it can reach, then this process
} DistTransport;

// Joins over MPI: fills at->local_rank/local_world from MPI's own view of the machine. NULL with an error (also
// when this build has no MPI).
void *dist_mpi_open(DistPlace *at, double timeout_s);
extern const DistTransport dist_mpi;

// How TCP ranks find rank 0: at host:port (MASTER_ADDR/MASTER_PORT, --dist-init tcp://), or through a file on a
// filesystem every rank sees, where rank 0 writes the address it listens on (--dist-init file:PATH).
typedef struct {
    char host[256], port[16];  // tcp://
    char file[4096];  // file:
    char launch[128];  // this launch's id (Slurm's job, step and restart; torchrun's run id; ...), "" if none
} DistRendezvous;

// Joins over TCP: rank 0 is the hub every rank connects to; sums then go round a ring of direct connections.
// Fills at->local_rank/local_world from the hosts the ranks report. NULL with an error.
void *dist_tcp_open(DistPlace *at, const DistRendezvous *rv, double timeout_s);
extern const DistTransport dist_tcp;

// The rendezvous messages, kept small and fixed so a stranger's bytes are refused, not trusted.
enum { DIST_HOST_MAX = 64, DIST_HELLO_BYTES = 4 + 4 * 4 + 8 + DIST_HOST_MAX, DIST_ENTRY_BYTES = 4 + 2 * DIST_HOST_MAX };
typedef struct {
    uint32_t world, rank, ring_port, status;  // status: 0, or (the hub's answer) 1 = another launch's rank
    uint64_t launch_hash;
    char host[DIST_HOST_MAX];  // the rank's machine (gethostname), which groups its local ranks
} DistHello;
typedef struct {
    char host[DIST_HOST_MAX];  // machine name, as in its hello
    char addr[DIST_HOST_MAX];  // numeric address the hub saw it connect from (its ring is reached there)
    uint32_t ring_port;
} DistPeer;
void dist_hello_encode(const DistHello *h, unsigned char out[DIST_HELLO_BYTES]);
// 0, or -1 with an error (not a llamaduo rank's hello, or fields that make no sense).
int dist_hello_decode(const unsigned char *in, size_t n, DistHello *h);
void dist_peer_encode(const DistPeer *p, unsigned char out[DIST_ENTRY_BYTES]);
int dist_peer_decode(const unsigned char *in, size_t n, DistPeer *p);
// The rendezvous file's text: 0 with rank 0's host and port when it is this launch's (same launch id and world),
// 1 when it is another's (a stale file: keep waiting), -1 with an error when it is not a rendezvous file.
int dist_rendezvous_file_parse(const char *text, const char *launch, int world, char host[256], char port[16]);
uint64_t dist_launch_hash(const char *launch);
