// NCCL's all-reduce, and the reduce-scatter and all-gather of ZeRO-1, for data-parallel training (collective.h),
// and sums started on the communicator's own stream beside the default stream's work. The communicator is
// nonblocking (config.blocking 0): its creation and each group or collective return at once (ncclInProgress) and
// are polled, as their streams are (the default one, or the communicator's in kc_comm_wait), through the
// communicator's asynchronous error and the stream. Only persistent buffers go to the started collectives, never
// the caching allocator's blocks, which the default stream may be handed again while they run. Past the deadline
// the communicator is aborted, which is what ends NCCL's own wait on a peer that is gone, at init (where a blocking communicator would wait for every rank
// with no limit), at its lazy connection set-up in the first group, and in a collective.
#include <nccl.h>
#include <string.h>
#include <time.h>

#include "common.cuh"

struct KcComm {
    ncclComm_t comm;
    double timeout_s;
    int rank, world;
    // the collectives started beside the default stream's work (kc_comm_*_start): their stream, non-blocking so the
    // legacy default stream neither waits for it nor makes it wait; and the event each one waits for first
    cudaStream_t stream;
    cudaEvent_t queued;
    int joined, pending;  // pending: collectives started and not yet waited for (kc_comm_free aborts them)
};

static const cudaStream_t k_default_stream = 0;

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

// Aborting ends NCCL's own wait, and its kernels, on a peer that is gone.
static void abort_comm(KcComm *c) {
    ncclCommAbort(c->comm), c->comm = NULL;
    if (c->pending) kc_side_stream(c->stream, 0, 0), c->pending = 0;
}

static int timed_out(KcComm *c, const char *what) {
    abort_comm(c);
    kc_set_error_msg(what, "the other ranks did not answer before the deadline (--dist-timeout): one of them has died or stopped "
                           "answering");
    return -1;
}

// Until NCCL's own work for the communicator (init, a group's launch) is done: 0, or -1 (aborted) on its error or
// past the deadline; with stream, until that stream's work is done too.
static int wait_done(KcComm *c, const char *what, const cudaStream_t *stream) {
    double t0 = now_s();
    for (;;) {
        ncclResult_t async;
        ncclResult_t q = ncclCommGetAsyncError(c->comm, &async);
        if (q != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
            abort_comm(c);
            return nccl_failed(what, q != ncclSuccess ? q : async);
        }
        if (async == ncclSuccess) {
            cudaError_t e = stream ? cudaStreamQuery(*stream) : cudaSuccess;
            if (e == cudaSuccess) return 0;
            if (e != cudaErrorNotReady) return kc_set_error(what, e), -1;
        }
        if (now_s() - t0 > c->timeout_s) return timed_out(c, what);
        struct timespec nap = {0, 100000};
        nanosleep(&nap, NULL);
    }
}

extern "C" KcComm *kc_comm_join(const unsigned char id[KC_COMM_ID_BYTES], int world, int rank, double timeout_s) {
    ncclUniqueId u;
    memcpy(u.internal, id, KC_COMM_ID_BYTES);
    KcComm *c = (KcComm *)calloc(1, sizeof *c);
    if (!c) return NULL;
    c->timeout_s = timeout_s, c->rank = rank, c->world = world;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&c->comm, world, u, rank, &config);
    if ((r != ncclSuccess && r != ncclInProgress) || !c->comm) {
        nccl_failed("ncclCommInitRankConfig", r);
        free(c);
        return NULL;
    }
    cudaError_t e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->queued, cudaEventDisableTiming);
    if (e != cudaSuccess || wait_done(c, "joining the other ranks (NCCL)", NULL)) {
        if (e != cudaSuccess) kc_set_error("the communicator's stream", e);
        kc_comm_free(c);
        return NULL;
    }
    c->joined = 1;
    return c;
}

// In place, as NCCL defines it: this rank's share of buf is buf + rank·chunk in both.
extern "C" int kc_comm_reduce_scatter(KcComm *c, float *buf, size_t chunk) {
    if (!c->comm) return kc_set_error_msg("reduce-scatter", "the communicator was aborted"), -1;
    if (!chunk) return 0;
    ncclResult_t r = ncclReduceScatter(buf, buf + (size_t)c->rank * chunk, chunk, ncclFloat32, ncclSum, c->comm, 0);
    if (r != ncclSuccess && r != ncclInProgress) return nccl_failed("ncclReduceScatter", r);
    return wait_done(c, "reduce-scatter", &k_default_stream);
}

extern "C" int kc_comm_all_gather(KcComm *c, float *buf, size_t chunk) {
    if (!c->comm) return kc_set_error_msg("all-gather", "the communicator was aborted"), -1;
    if (!chunk) return 0;
    ncclResult_t r = ncclAllGather(buf + (size_t)c->rank * chunk, buf, chunk, ncclFloat32, c->comm, 0);
    if (r != ncclSuccess && r != ncclInProgress) return nccl_failed("ncclAllGather", r);
    return wait_done(c, "all-gather", &k_default_stream);
}

// The communicator's stream waits for what the default stream has queued so far.
static int after_queued(KcComm *c, const char *what) {
    cudaError_t e = cudaEventRecord(c->queued, 0);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(c->stream, c->queued, 0);
    return e == cudaSuccess ? 0 : (kc_set_error(what, e), -1);
}

// A group's launch: with a nonblocking communicator no other NCCL call may come before it is done (host side).
static int group_launched(KcComm *c, const char *what, ncclResult_t r) {
    ncclResult_t end = ncclGroupEnd();
    c->pending = 1;
    kc_side_stream(c->stream, c->timeout_s, 1);
    if (r != ncclSuccess || (end != ncclSuccess && end != ncclInProgress)) {
        nccl_failed(what, r != ncclSuccess ? r : end);
        abort_comm(c);  // (what the group did launch is never waited for)
        return -1;
    }
    return wait_done(c, what, NULL);
}

extern "C" int kc_comm_sum_start(KcComm *c, float *const *bufs, const size_t *n, int k) {
    if (!c->comm) return kc_set_error_msg("all-reduce", "the communicator was aborted"), -1;
    if (after_queued(c, "all-reduce")) return -1;
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < k && r == ncclSuccess; i++)
        if (n[i]) r = ncclAllReduce(bufs[i], bufs[i], n[i], ncclFloat32, ncclSum, c->comm, c->stream);
    return group_launched(c, "all-reduce (ncclAllReduce)", r);
}

// Each span cut at the chunks' edges, and each piece reduced onto the rank whose chunk it lies in: together the
// reduce-scatter's traffic, a bucket at a time.
extern "C" int kc_comm_reduce_start(KcComm *c, float *buf, const size_t (*spans)[2], int k, size_t chunk) {
    if (!c->comm) return kc_set_error_msg("reduce", "the communicator was aborted"), -1;
    if (!chunk) return 0;
    if (after_queued(c, "reduce")) return -1;
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < k && r == ncclSuccess; i++)
        for (size_t a = spans[i][0], b; a < spans[i][1] && r == ncclSuccess; a = b) {
            int root = (int)(a / chunk);
            b = (size_t)(root + 1) * chunk < spans[i][1] ? (size_t)(root + 1) * chunk : spans[i][1];
            r = ncclReduce(buf + a, buf + a, b - a, ncclFloat32, ncclSum, root, c->comm, c->stream);
        }
    return group_launched(c, "reduce (ncclReduce)", r);
}

extern "C" int kc_comm_wait(KcComm *c) {
    if (!c->comm) return kc_set_error_msg("waiting for the collectives", "the communicator was aborted"), -1;
    if (wait_done(c, "the collectives on the communicator's stream", &c->stream)) {
        if (c->comm) abort_comm(c);  // (a stream error: the work is never waited for again)
        return -1;
    }
    c->pending = 0;
    kc_side_stream(c->stream, 0, 0);
    return 0;
}

// (the same group started on the communicator's stream, then waited for)
extern "C" int kc_comm_sum(KcComm *c, float *const *bufs, const size_t *n, int k) {
    return kc_comm_sum_start(c, bufs, n, k) || kc_comm_wait(c) ? -1 : 0;
}

extern "C" void kc_comm_free(KcComm *c) {
    if (!c) return;
    if (c->comm && (c->pending || !c->joined))  // work never waited for, or a join that failed: destroying would wait for it
        abort_comm(c);
    else if (c->comm)
        ncclCommDestroy(c->comm);
    if (c->queued) cudaEventDestroy(c->queued);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}
