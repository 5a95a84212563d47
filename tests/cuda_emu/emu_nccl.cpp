// The emulator's NCCL (nccl.h): a communicator is a POSIX shared-memory segment, "/llamaduo-nccl-<id>", made by
// rank 0 and opened by the others: a header (the barrier's counter and generation) and one slot of kSlot floats
// per rank. Every collective goes through it kSlot floats at a time: each rank copies its piece into its slot, all
// meet at the barrier, each reads what it needs from the slots into its output, and all meet again before the
// slots are reused. An all-reduce sums every slot in rank order; a reduce-scatter walks the whole send buffer
// (world·recvcount floats) the same way and each rank sums, in rank order, only the pieces inside its own share (a
// reduce: the root alone sums them all);
// an all-gather copies every rank's slot to that rank's place in everyone's output. In place works for each, as
// NCCL defines it (recv == send + rank·recvcount; send == recv + rank·sendcount): a piece is in the slots before
// anyone writes over it.
#include "nccl.h"

#include <atomic>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

namespace {
const size_t kSlot = (size_t)1 << 20;  // floats per rank and round trip

struct Header {
    std::atomic<int> ready, arrived, generation;
    int world;
};

double now_s() {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

double timeout_s() {
    const char *s = getenv("LLAMADUO_EMU_NCCL_TIMEOUT");
    return s ? atof(s) : 60;
}

void nap() {
    struct timespec t = {0, 50000};
    nanosleep(&t, NULL);
}
}  // namespace

struct EmuNcclComm {
    Header *h;
    float *slots;  // [world][kSlot]
    size_t bytes;
    int world, rank;
    ncclResult_t async;
};

namespace {
// Every rank arrives, or the wait ends with ncclRemoteError after the timeout.
ncclResult_t barrier(EmuNcclComm *c) {
    int gen = c->h->generation.load();
    if (c->h->arrived.fetch_add(1) == c->world - 1) {
        c->h->arrived.store(0);
        c->h->generation.fetch_add(1);
        return ncclSuccess;
    }
    double t0 = now_s(), limit = timeout_s();
    while (c->h->generation.load() == gen) {
        if (now_s() - t0 > limit) return c->async = ncclRemoteError;
        nap();
    }
    return ncclSuccess;
}

void segment_name(const ncclUniqueId &id, char *out, size_t cap) { snprintf(out, cap, "/llamaduo-nccl-%.32s", id.internal); }
}  // namespace

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "unhandled system error (emulated NCCL: shared memory)";
    case ncclInvalidArgument: return "invalid argument";
    case ncclRemoteError: return "remote process exited or there was a network error (emulated NCCL: a rank did not arrive)";
    default: return "unknown NCCL error";
    }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) return ncclSystemError;
    memset(id->internal, 0, sizeof id->internal);
    for (int i = 0; i < 16; i++) snprintf(id->internal + 2 * i, 3, "%02x", r[i]);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    char name[64];
    segment_name(id, name, sizeof name);
    size_t bytes = sizeof(Header) + 64 + sizeof(float) * kSlot * (size_t)nranks;
    int fd = -1;
    double t0 = now_s();
    if (rank == 0) {
        fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)bytes)) return ncclSystemError;
    } else {  // rank 0 may not have made it yet
        while ((fd = shm_open(name, O_RDWR, 0600)) < 0 && now_s() - t0 < timeout_s()) nap();
        if (fd < 0) return ncclRemoteError;
        struct stat st;
        while (fstat(fd, &st) == 0 && (size_t)st.st_size < bytes && now_s() - t0 < timeout_s()) nap();
        if (fstat(fd, &st) || (size_t)st.st_size < bytes) {  // rank 0 made it for another world size, or never finished
            close(fd);
            return ncclInvalidUsage;
        }
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return ncclSystemError;
    EmuNcclComm *c = new EmuNcclComm{(Header *)p, (float *)((char *)p + sizeof(Header) + 64), bytes, nranks, rank, ncclSuccess};
    if (rank == 0) {
        c->h->world = nranks;
        c->h->ready.store(1);
    } else {
        while (!c->h->ready.load() && now_s() - t0 < timeout_s()) nap();
    }
    ncclResult_t r = c->h->ready.load() && c->h->world == nranks ? barrier(c) : ncclInvalidUsage;
    // every rank has it mapped: nothing is left behind, even after a kill; a rank that gave up on a rank 0 that
    // died before everyone joined removes it instead
    if (rank == 0 || r != ncclSuccess) shm_unlink(name);
    if (r != ncclSuccess) {
        munmap(p, bytes);
        delete c;
        return r;
    }
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *config) {
    (void)config;
    return ncclCommInitRank(comm, nranks, id, rank);
}

namespace {
// count floats of every rank's in, summed in rank order into out on every rank (root -1) or on root alone.
ncclResult_t sum_rounds(EmuNcclComm *c, const float *in, float *out, size_t count, int root) {
    for (size_t off = 0; off < count; off += kSlot) {
        size_t n = count - off < kSlot ? count - off : kSlot;
        memcpy(c->slots + (size_t)c->rank * kSlot, in + off, sizeof(float) * n);
        if (barrier(c) != ncclSuccess) return c->async;
        for (size_t i = 0; (root < 0 || c->rank == root) && i < n; i++) {
            float s = 0;
            for (int r = 0; r < c->world; r++) s += c->slots[(size_t)r * kSlot + i];
            out[off + i] = s;
        }
        if (barrier(c) != ncclSuccess) return c->async;
    }
    return ncclSuccess;
}
}  // namespace

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op, ncclComm_t c,
                           cudaStream_t stream) {
    (void)stream;
    if (type != ncclFloat32 || op != ncclSum || !c) return ncclInvalidArgument;
    if (c->async != ncclSuccess) return c->async;
    return sum_rounds(c, (const float *)send, (float *)recv, count, -1);
}

ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount, ncclDataType_t datatype, ncclRedOp_t op,
                               ncclComm_t c, cudaStream_t stream) {
    (void)stream;
    if (datatype != ncclFloat32 || op != ncclSum || !c) return ncclInvalidArgument;
    if (c->async != ncclSuccess) return c->async;
    const float *in = (const float *)sendbuff;
    float *out = (float *)recvbuff;
    size_t total = recvcount * (size_t)c->world, lo = recvcount * (size_t)c->rank, hi = lo + recvcount;
    for (size_t off = 0; off < total; off += kSlot) {
        size_t n = total - off < kSlot ? total - off : kSlot;
        memcpy(c->slots + (size_t)c->rank * kSlot, in + off, sizeof(float) * n);
        if (barrier(c) != ncclSuccess) return c->async;
        size_t a = off > lo ? off : lo, b = off + n < hi ? off + n : hi;  // this round's part of my share
        for (size_t j = a; j < b; j++) {
            float s = 0;
            for (int r = 0; r < c->world; r++) s += c->slots[(size_t)r * kSlot + (j - off)];
            out[j - lo] = s;
        }
        if (barrier(c) != ncclSuccess) return c->async;
    }
    return ncclSuccess;
}

// Every rank's piece in its slot, the root sums them in rank order (the all-reduce's bits) into its recvbuff.
ncclResult_t ncclReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op, int root, ncclComm_t c,
                        cudaStream_t stream) {
    (void)stream;
    if (datatype != ncclFloat32 || op != ncclSum || !c || root < 0 || root >= c->world) return ncclInvalidArgument;
    if (c->async != ncclSuccess) return c->async;
    return sum_rounds(c, (const float *)sendbuff, (float *)recvbuff, count, root);
}

ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype, ncclComm_t c,
                           cudaStream_t stream) {
    (void)stream;
    if (datatype != ncclFloat32 || !c) return ncclInvalidArgument;
    if (c->async != ncclSuccess) return c->async;
    const float *in = (const float *)sendbuff;
    float *out = (float *)recvbuff;
    for (size_t off = 0; off < sendcount; off += kSlot) {
        size_t n = sendcount - off < kSlot ? sendcount - off : kSlot;
        memcpy(c->slots + (size_t)c->rank * kSlot, in + off, sizeof(float) * n);
        if (barrier(c) != ncclSuccess) return c->async;
        for (int r = 0; r < c->world; r++) memcpy(out + (size_t)r * sendcount + off, c->slots + (size_t)r * kSlot, sizeof(float) * n);
        if (barrier(c) != ncclSuccess) return c->async;
    }
    return ncclSuccess;
}

ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *async) {
    *async = c->async;
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t c) { return ncclCommDestroy(c); }

ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (!c) return ncclSuccess;
    munmap(c->h, c->bytes);
    delete c;
    return ncclSuccess;
}
