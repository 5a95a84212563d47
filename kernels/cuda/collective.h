// defines: sums across data-parallel ranks on the device (NCCL; kernels/cuda/collective.cu): one communicator per
// rank, its id made by rank 0 and handed to the others by the caller (over MPI); in-place sums of device buffers
// (all-reduce; reduce-scatter and all-gather for ZeRO-1's sharded optimizer state), each waited for with a
// deadline so a rank that died or stopped answering ends the wait with an error, not a hang; and the same sums
// started beside the backward pass on a stream of their own, waited for later. Each returns 0, or -1 with kc_last_error().
#pragma once
#include <stddef.h>

#define KC_COMM_ID_BYTES 128

typedef struct KcComm KcComm;

int kc_comm_id(unsigned char id[KC_COMM_ID_BYTES]);  // rank 0 only; fresh each run (no stale id)
// Every rank with the same id, world and its own rank (on its own device, chosen before); NULL with an error.
KcComm *kc_comm_join(const unsigned char id[KC_COMM_ID_BYTES], int world, int rank, double timeout_s);
// bufs[k][n[k]] (device, fp32) summed in place over the ranks, as one group; waits for the result
// (kc_comm_sum_start, then kc_comm_wait).
int kc_comm_sum(KcComm *c, float *const *bufs, const size_t *n, int k);
// ZeRO-1: buf[world·chunk] (device, fp32) summed over the ranks; this rank's chunk, buf + rank·chunk, holds its
// sum afterwards (in place; the rest of buf is left undefined). Waits for the result.
int kc_comm_reduce_scatter(KcComm *c, float *buf, size_t chunk);
// Every rank's chunk (buf + rank·chunk) into every rank's buf[world·chunk], in place. Waits for the result.
int kc_comm_all_gather(KcComm *c, float *buf, size_t chunk);
// Overlapping the backward pass: collectives started on the communicator's own stream once the work queued so far
// on the default stream is done (an event), returning without waiting for them, so the default stream's later work
// runs beside them; it must leave their buffers alone until kc_comm_wait. Each returns 0, or -1 with an error.
// bufs[k][n[k]] (device, fp32) summed in place over the ranks, as one group.
int kc_comm_sum_start(KcComm *c, float *const *bufs, const size_t *n, int k);
// ZeRO-1's share of a bucket: elements spans[i][0] .. spans[i][1]-1 of buf[world·chunk] (device, fp32) summed over
// the ranks, each element into the rank whose chunk (buf + rank·chunk) holds it, in place; elsewhere buf is left as
// it was. One group.
int kc_comm_reduce_start(KcComm *c, float *buf, const size_t (*spans)[2], int k, size_t chunk);
// Until every collective started is done, with the communicator's deadline.
int kc_comm_wait(KcComm *c);
void kc_comm_free(KcComm *c);
