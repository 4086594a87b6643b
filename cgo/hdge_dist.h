/*
 * hdge_dist.h: the shim's distributed part over c10d: a TCPStore rendezvous, a process group over
 * Gloo (CPU tensors) or NCCL (CUDA builds only), collectives over many tensors in buckets, and a
 * heartbeat through the store that tells which peer was lost when a collective fails.
 *
 * Same conventions as hdge_torch.h: NULL or a malloc'd hdge_error, results through out-parameters,
 * no exception leaves the library, nothing kept in thread-local state. A group's own state (whether
 * it is broken, which ranks it lost) lives on the group and is read with hdge_dist_lost.
 * Every collective blocks until done, failed or past timeout_ms (<= 0: the group's op timeout).
 * A group is used by one thread at a time; its heartbeat runs on a thread of its own.
 */
#ifndef HDGE_DIST_H
#define HDGE_DIST_H

#include "hdge_torch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hdge_dist_group_s *hdge_dist_group;

enum { HDGE_DIST_GLOO = 0, HDGE_DIST_NCCL = 1 };
enum { HDGE_DIST_SUM = 0, HDGE_DIST_MEAN = 1 };

typedef struct hdge_dist_options {
  const char *master_addr; /* the TCPStore's host: rank 0 listens there, the others connect */
  int port;
  int rank;
  int world_size;
  int backend;
  /* Gloo's transport: bind to this interface (e.g. "eth0") when set, else to the address this
   * hostname or address resolves to, else to the machine's hostname (loopback as a fallback). */
  const char *gloo_iface;
  const char *gloo_host;
  int cuda_device;            /* NCCL: this rank's device index */
  int64_t connect_timeout_ms; /* reaching the master, and every rank joining */
  int64_t op_timeout_ms;      /* default for each collective, and Gloo's own timeout */
  int64_t heartbeat_ms;       /* how often each rank bumps its liveness counter in the store */
  int64_t dead_after_ms;      /* a peer whose counter has not moved for this long is lost */
} hdge_dist_options;

/* 1 when this shim was built with the backend (Gloo always, NCCL in CUDA builds with NCCL). */
int hdge_dist_has_backend(int backend);

/* Rendezvous and process-group creation; returns only when every rank has joined. */
hdge_error *hdge_dist_init(const hdge_dist_options *o, hdge_dist_group *out);
int hdge_dist_rank(hdge_dist_group g);
int hdge_dist_world_size(hdge_dist_group g);

/* Reduces n tensors in place across ranks (op SUM or MEAN). Tensors are packed in order into
 * contiguous buckets of at most bucket_bytes (one tensor larger than that gets a bucket of its
 * own), one all-reduce per bucket, all buckets in flight at once; then copied back. Every rank
 * passes the same list. *nbuckets (may be NULL) is the number of buckets used. */
hdge_error *hdge_dist_allreduce(hdge_dist_group g, const hdge_tensor *ts, int n, int op, int64_t bucket_bytes,
                                int64_t timeout_ms, int64_t *nbuckets);
/* Every rank's t (same shape on every rank) concatenated along dim 0 in rank order: a new handle. */
hdge_error *hdge_dist_allgather(hdge_dist_group g, hdge_tensor t, int64_t timeout_ms, hdge_tensor *out);
/* Overwrites n tensors in place with root's values, in buckets as hdge_dist_allreduce. */
hdge_error *hdge_dist_broadcast(hdge_dist_group g, const hdge_tensor *ts, int n, int root, int64_t bucket_bytes,
                                int64_t timeout_ms);
hdge_error *hdge_dist_barrier(hdge_dist_group g, int64_t timeout_ms);

/* Once an op failed the group is broken and every later op fails at once. Writes min(count, cap)
 * lost ranks to out and returns their count (0 while healthy, or when a failure named no rank). */
int hdge_dist_lost(hdge_dist_group g, int *out, int cap);

/* Stops the heartbeat and frees the group. A healthy group waits (up to its connect timeout) for
 * every rank to close before rank 0 takes the store down; a broken one is abandoned to the
 * process's exit, because Gloo's threads may still be blocked on a dead peer. */
void hdge_dist_close(hdge_dist_group g);

#ifdef __cplusplus
}
#endif

#endif
