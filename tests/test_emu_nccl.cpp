// The CUDA emulator's NCCL (tests/cuda_emu/emu_nccl.cpp) and the wrapper over it (kernels/cuda/collective.cu) for
// ZeRO-1: reduce-scatter and all-gather on 2 and 3 ranks, and the overlap's reduces and all-reduces of spans, each rank a fork()ed process with its own communicator
// from one unique id, as under mpirun. Sizes are not multiples of the emulator's slot (2^20 floats), so rounds
// straddle the ranks' shares; in place (NCCL's rule: recv == send + rank·recvcount for the reduce-scatter, send ==
// recv + rank·sendcount for the all-gather) and out of place. Every result must equal, bit for bit, what the test
// computes itself: the sum in rank order from 0 (the emulator's order, the all-reduce's too), or the gathered chunks.
// ctest label emu.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nccl.h"
extern "C" {
#include "kernels_cuda.h"
}

static int g_checks, g_fail;

static void check(int ok, int rank, const char *what) {
    g_checks++;
    if (!ok) g_fail++;
    printf("%s rank %d: %s\n", ok ? "ok  " : "FAIL", rank, what);
    fflush(stdout);
}

// rank r's value at i (salt: which buffer): 24 random bits at magnitudes from 2^-5 to 2^5 that differ between the
// ranks, so a sum rounds and its order shows in its bits (on three ranks; two floats add the same either way)
static float value(int r, size_t i, unsigned salt) {
    uint64_t h = (uint64_t)i * 0x9e3779b97f4a7c15ull ^ ((uint64_t)r + 1) * 0xc2b2ae3d27d4eb4full ^ (uint64_t)salt * 0x165667b19e3779f9ull;
    h ^= h >> 29, h *= 0xbf58476d1ce4e5b9ull, h ^= h >> 32;
    float u = (float)((double)(h >> 40) / 16777216.0) * 2 - 1;
    return ldexpf(u, (int)((i + 5 * (size_t)r) % 11) - 5);
}

static float rank_sum(int world, size_t i, unsigned salt) {  // the emulator's order: 0, then rank 0, 1, ...
    float s = 0;
    for (int r = 0; r < world; r++) s += value(r, i, salt);
    return s;
}

// n floats of got equal to want bit for bit; on a mismatch, where and what
static void check_equal(const float *got, const float *want, size_t n, int rank, const char *what) {
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (memcmp(got + i, want + i, sizeof(float))) bad = i;
    char msg[256];
    if (bad == n)
        snprintf(msg, sizeof msg, "%s (%zu floats, bit-exact)", what, n);
    else
        snprintf(msg, sizeof msg, "%s: element %zu is %.9g, expected %.9g", what, bad, got[bad], want[bad]);
    check(bad == n, rank, msg);
}

static float *filled(size_t n, float v) {
    float *p = (float *)malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

// One rank's checks for one chunk size, on the emulator's NCCL directly and through kc_comm_*.
static void run_rank(int world, int rank, size_t chunk, const ncclUniqueId &id, const unsigned char *kc_id) {
    size_t total = chunk * (size_t)world;
    char what[160];
    ncclComm_t comm = NULL;
    ncclResult_t r = ncclCommInitRank(&comm, world, id, rank);
    snprintf(what, sizeof what, "ncclCommInitRank (world %d): %s", world, ncclGetErrorString(r));
    check(r == ncclSuccess, rank, what);
    if (r != ncclSuccess) return;

    float *mine = filled(total, 0), *share = filled(chunk, 0), *all = filled(total, 0);
    for (size_t i = 0; i < total; i++) mine[i] = value(rank, i, 1);
    for (size_t i = 0; i < chunk; i++) share[i] = rank_sum(world, (size_t)rank * chunk + i, 1);

    // reduce-scatter, out of place: recv[chunk] gets my share's sums, send is left alone
    float *send = (float *)malloc(sizeof(float) * total), *recv = filled(chunk, NAN);
    memcpy(send, mine, sizeof(float) * total);
    r = ncclReduceScatter(send, recv, chunk, ncclFloat32, ncclSum, comm, 0);
    snprintf(what, sizeof what, "ncclReduceScatter out of place, world %d, chunk %zu: %s", world, chunk, ncclGetErrorString(r));
    check(r == ncclSuccess, rank, what);
    check_equal(recv, share, chunk, rank, "  its share: the rank-order sums");
    check_equal(send, mine, total, rank, "  its send buffer untouched");

    // reduce-scatter in place: recv = send + rank·chunk
    r = ncclReduceScatter(send, send + (size_t)rank * chunk, chunk, ncclFloat32, ncclSum, comm, 0);
    snprintf(what, sizeof what, "ncclReduceScatter in place, world %d, chunk %zu: %s", world, chunk, ncclGetErrorString(r));
    check(r == ncclSuccess, rank, what);
    check_equal(send + (size_t)rank * chunk, share, chunk, rank, "  its share, in place");

    // the same bits as the all-reduce's
    memcpy(send, mine, sizeof(float) * total);
    r = ncclAllReduce(send, send, total, ncclFloat32, ncclSum, comm, 0);
    check(r == ncclSuccess, rank, "ncclAllReduce of the same buffers");
    check_equal(send + (size_t)rank * chunk, share, chunk, rank, "  the all-reduce's bits at my share = the reduce-scatter's");

    // all-gather: every rank's chunk (salt 2) in every rank's buffer, out of place and in place
    for (int q = 0; q < world; q++)
        for (size_t i = 0; i < chunk; i++) all[(size_t)q * chunk + i] = value(q, i, 2);
    float *gsend = (float *)malloc(sizeof(float) * (chunk ? chunk : 1)), *grecv = filled(total, NAN);
    memcpy(gsend, all + (size_t)rank * chunk, sizeof(float) * chunk);
    r = ncclAllGather(gsend, grecv, chunk, ncclFloat32, comm, 0);
    snprintf(what, sizeof what, "ncclAllGather out of place, world %d, chunk %zu: %s", world, chunk, ncclGetErrorString(r));
    check(r == ncclSuccess, rank, what);
    check_equal(grecv, all, total, rank, "  every rank's chunk in place of its rank");
    float *gbuf = filled(total, NAN);
    memcpy(gbuf + (size_t)rank * chunk, gsend, sizeof(float) * chunk);
    r = ncclAllGather(gbuf + (size_t)rank * chunk, gbuf, chunk, ncclFloat32, comm, 0);
    snprintf(what, sizeof what, "ncclAllGather in place, world %d, chunk %zu: %s", world, chunk, ncclGetErrorString(r));
    check(r == ncclSuccess, rank, what);
    check_equal(gbuf, all, total, rank, "  every rank's chunk, in place");

    // what the emulator refuses: another type than fp32 (every rank, so no one waits at a barrier)
    r = ncclReduceScatter(send, recv, chunk, (ncclDataType_t)0, ncclSum, comm, 0);
    check(r == ncclInvalidArgument, rank, "ncclReduceScatter of a non-fp32 type: ncclInvalidArgument");
    r = ncclAllGather(gsend, grecv, chunk, (ncclDataType_t)0, comm, 0);
    check(r == ncclInvalidArgument, rank, "ncclAllGather of a non-fp32 type: ncclInvalidArgument");
    ncclCommDestroy(comm);

    // the wrapper, on device buffers: kc_comm_reduce_scatter, then kc_comm_all_gather of the sums (ZeRO-1's step)
    KcComm *c = kc_comm_join(kc_id, world, rank, 30);
    snprintf(what, sizeof what, "kc_comm_join (world %d)%s%s", world, c ? "" : ": ", c ? "" : kc_last_error());
    check(c != NULL, rank, what);
    if (c) {
        float *d = (float *)kc_alloc(sizeof(float) * (total ? total : 1)), *h = filled(total, NAN);
        int rc = kc_upload(d, mine, sizeof(float) * total) || kc_comm_reduce_scatter(c, d, chunk) ||
                 kc_download(h, d, sizeof(float) * total);
        snprintf(what, sizeof what, "kc_comm_reduce_scatter, world %d, chunk %zu%s%s", world, chunk, rc ? ": " : "", rc ? kc_last_error() : "");
        check(rc == 0, rank, what);
        check_equal(h + (size_t)rank * chunk, share, chunk, rank, "  its share of the sums");
        // every share's sums, the others' chunks poisoned first: all of them must come back
        float *sums = filled(total, NAN);
        for (size_t i = 0; i < total; i++) sums[i] = rank_sum(world, i, 1);
        for (size_t i = 0; i < total; i++)
            if (i / (chunk ? chunk : 1) != (size_t)rank) h[i] = NAN;
        rc = kc_upload(d, h, sizeof(float) * total) || kc_comm_all_gather(c, d, chunk) || kc_download(h, d, sizeof(float) * total);
        snprintf(what, sizeof what, "kc_comm_all_gather, world %d, chunk %zu%s%s", world, chunk, rc ? ": " : "", rc ? kc_last_error() : "");
        check(rc == 0, rank, what);
        check_equal(h, sums, total, rank, "  every rank's sums in every rank's buffer (= the all-reduce)");
        // the overlap's buckets: spans across the chunks' edges reduced onto their owners (ZeRO-1), then spans
        // all-reduced, both started and waited for after; nothing outside a span changes
        size_t spans[3][2] = {{chunk / 2, chunk + chunk / 3},
                              {total - total / 7, total},
                              {chunk + chunk / 3 + 1, chunk + chunk / 3 + 2}};  // (disjoint, as buckets are)
        float *want = filled(total, NAN);
        for (size_t i = 0; i < total; i++) {
            int in = 0;
            for (int k = 0; k < 3; k++) in |= i >= spans[k][0] && i < spans[k][1];
            want[i] = in && i / (chunk ? chunk : 1) == (size_t)rank ? sums[i] : mine[i];
        }
        rc = kc_upload(d, mine, sizeof(float) * total) || kc_comm_reduce_start(c, d, spans, 3, chunk) || kc_comm_wait(c) ||
             kc_download(h, d, sizeof(float) * total);
        snprintf(what, sizeof what, "kc_comm_reduce_start, world %d, chunk %zu%s%s", world, chunk, rc ? ": " : "",
                 rc ? kc_last_error() : "");
        check(rc == 0, rank, what);
        check_equal(h, want, total, rank, "  the spans' sums in their owners' chunks, the rest as it was");
        float *bufs[2] = {d + spans[0][0], d + spans[1][0]};
        size_t lens[2] = {spans[0][1] - spans[0][0], spans[1][1] - spans[1][0]};
        for (size_t i = 0; i < total; i++)
            want[i] = (i >= spans[0][0] && i < spans[0][1]) || (i >= spans[1][0] && i < spans[1][1]) ? sums[i] : mine[i];
        rc = kc_upload(d, mine, sizeof(float) * total) || kc_comm_sum_start(c, bufs, lens, 2) || kc_comm_wait(c) ||
             kc_download(h, d, sizeof(float) * total);
        snprintf(what, sizeof what, "kc_comm_sum_start, world %d, chunk %zu%s%s", world, chunk, rc ? ": " : "", rc ? kc_last_error() : "");
        check(rc == 0, rank, what);
        check_equal(h, want, total, rank, "  the spans' sums on every rank, the rest as it was");
        free(want);
        kc_comm_free(c);
        kc_free(d);
        free(h), free(sums);
    }
    free(mine), free(share), free(all), free(send), free(recv), free(gsend), free(grecv), free(gbuf);
}

// world ranks as processes; each reports its checks and failures through a pipe. Returns the failures.
static int run_world(int world, size_t chunk) {
    ncclUniqueId id;
    unsigned char kc_id[KC_COMM_ID_BYTES];
    if (ncclGetUniqueId(&id) != ncclSuccess || kc_comm_id(kc_id)) {
        printf("FAIL cannot make the unique ids\n");
        g_checks++, g_fail++;
        return 1;
    }
    int fds[2];
    if (pipe(fds)) {
        perror("pipe");
        g_checks++, g_fail++;
        return 1;
    }
    pid_t pids[8];
    for (int rank = 0; rank < world; rank++) {
        fflush(stdout);
        pids[rank] = fork();
        if (pids[rank] == 0) {
            close(fds[0]);
            g_checks = g_fail = 0;
            run_rank(world, rank, chunk, id, kc_id);
            int counts[2] = {g_checks, g_fail};
            ssize_t w = write(fds[1], counts, sizeof counts);
            _exit(w == (ssize_t)sizeof counts && g_fail == 0 ? 0 : 1);
        }
    }
    close(fds[1]);
    int reported = 0, failed_before = g_fail;
    int counts[2];
    while (read(fds[0], counts, sizeof counts) == (ssize_t)sizeof counts) g_checks += counts[0], g_fail += counts[1], reported++;
    close(fds[0]);
    for (int rank = 0; rank < world; rank++) {
        int st = 0;
        waitpid(pids[rank], &st, 0);
        g_checks++;
        if (!WIFEXITED(st) || WEXITSTATUS(st)) {
            g_fail++;
            printf("FAIL world %d, chunk %zu: rank %d exited with status %d\n", world, chunk, rank, st);
        }
    }
    g_checks++;
    if (reported != world) g_fail++, printf("FAIL world %d: %d of %d ranks reported\n", world, reported, world);
    return g_fail - failed_before;
}

int main(void) {
    setenv("LLAMADUO_EMU_NCCL_TIMEOUT", "30", 0);  // a rank that is gone fails the others' wait within the test's time
    setvbuf(stdout, NULL, _IOLBF, 0);
    // 2.5M floats in all on two ranks (a round holds a share's end and the next one's start); three ranks with
    // chunks under and over one slot; a tiny chunk (one round for everyone)
    const struct {
        int world;
        size_t chunk;
    } cases[] = {{2, 1250000}, {3, 833334}, {3, 1500001}, {2, 7}, {3, 1}};
    for (const auto &c : cases) {
        printf("-- world %d, chunk %zu (%zu floats in all)\n", c.world, c.chunk, c.chunk * c.world);
        run_world(c.world, c.chunk);
    }
    printf("%d passed, %d failed\n", g_checks - g_fail, g_fail);
    return g_fail ? 1 : 0;
}
