// NCCL's all-reduce for data-parallel training (collective.h). Every collective is enqueued on the default stream
// with the kernels, then waited for by polling the stream and the communicator's asynchronous error: past the
// deadline the communicator is aborted, which is what ends NCCL's own wait on a peer that is gone.
#include <nccl.h>
#include <string.h>
#include <time.h>

#include "common.cuh"

struct KcComm {
    ncclComm_t comm;
    double timeout_s;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int nccl_failed(const char *what, ncclResult_t r) {
    kc_set_error_msg(what, ncclGetErrorString(r));
    return -1;
}

extern "C" int kc_comm_id(unsigned char id[KC_COMM_ID_BYTES]) {
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return nccl_failed("ncclGetUniqueId", r);
    memcpy(id, u.internal, KC_COMM_ID_BYTES);
    return 0;
}

extern "C" KcComm *kc_comm_join(const unsigned char id[KC_COMM_ID_BYTES], int world, int rank, double timeout_s) {
    ncclUniqueId u;
    memcpy(u.internal, id, KC_COMM_ID_BYTES);
    KcComm *c = (KcComm *)calloc(1, sizeof *c);
    if (!c) return NULL;
    c->timeout_s = timeout_s;
    ncclResult_t r = ncclCommInitRank(&c->comm, world, u, rank);
    if (r != ncclSuccess) {
        nccl_failed("ncclCommInitRank", r);
        free(c);
        return NULL;
    }
    return c;
}

// The enqueued collectives' end: 0, or -1 when NCCL reports an error or the deadline passes (then aborted).
static int wait_done(KcComm *c) {
    double t0 = now_s();
    for (;;) {
        cudaError_t e = cudaStreamQuery(0);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) return kc_set_error("all-reduce", e), -1;
        ncclResult_t async;
        if (ncclCommGetAsyncError(c->comm, &async) == ncclSuccess && async != ncclSuccess) {
            ncclCommAbort(c->comm), c->comm = NULL;
            return nccl_failed("all-reduce", async);
        }
        if (now_s() - t0 > c->timeout_s) {
            ncclCommAbort(c->comm), c->comm = NULL;
            kc_set_error_msg("all-reduce", "the other ranks did not answer before the deadline (--dist-timeout): one of them has "
                                           "died or stopped answering");
            return -1;
        }
        struct timespec nap = {0, 100000};
        nanosleep(&nap, NULL);
    }
}

extern "C" int kc_comm_sum(KcComm *c, float *const *bufs, const size_t *n, int k) {
    if (!c->comm) return kc_set_error_msg("all-reduce", "the communicator was aborted"), -1;
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < k && r == ncclSuccess; i++)
        if (n[i]) r = ncclAllReduce(bufs[i], bufs[i], n[i], ncclFloat32, ncclSum, c->comm, 0);
    ncclResult_t end = ncclGroupEnd();
    if (r != ncclSuccess || end != ncclSuccess) return nccl_failed("ncclAllReduce", r != ncclSuccess ? r : end);
    return wait_done(c);
}

extern "C" void kc_comm_free(KcComm *c) {
    if (!c) return;
    if (c->comm) ncclCommDestroy(c->comm);
    free(c);
}
