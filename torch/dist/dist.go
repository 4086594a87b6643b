package dist

/*
#cgo CFLAGS: -I${SRCDIR}/../../cgo
#cgo LDFLAGS: -L${SRCDIR}/../../build -lhdgetorch -Wl,-rpath,${SRCDIR}/../../build
#include <stdlib.h>
#include "hdge_dist.h"
*/
import "C"

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/hdge-torch/hdge-torch/torch"
)

// Backend is the process group's transport.
type Backend int

const (
	Gloo Backend = C.HDGE_DIST_GLOO // CPU tensors
	NCCL Backend = C.HDGE_DIST_NCCL // CUDA tensors; only in shims built against a CUDA libtorch with NCCL
)

func (b Backend) String() string {
	switch b {
	case Gloo:
		return "gloo"
	case NCCL:
		return "nccl"
	}
	return "Backend(" + strconv.Itoa(int(b)) + ")"
}

// Available reports whether the loaded shim was built with b.
func Available(b Backend) bool { return C.hdge_dist_has_backend(C.int(b)) != 0 }

// ReduceOp is how AllReduce combines the ranks' values.
type ReduceOp int

const (
	Sum  ReduceOp = C.HDGE_DIST_SUM
	Mean ReduceOp = C.HDGE_DIST_MEAN // the sum divided by the world size, as DDP averages gradients
)

// DefaultBucketBytes is DDP's bucket_cap_mb (25 MiB).
const DefaultBucketBytes = 25 << 20

// Config describes one rank's place in the group. Zero durations take the defaults below.
type Config struct {
	MasterAddr string // the host rank 0 serves the store on, e.g. "127.0.0.1"
	MasterPort int
	Rank       int
	WorldSize  int
	Backend    Backend
	// Gloo's transport: an interface name (GLOO_SOCKET_IFNAME), else an address or hostname to bind
	// to. Both empty: 127.0.0.1 when the master is a loopback address, else this machine's hostname.
	GlooIface, GlooHost string
	CUDADevice          int // NCCL: this rank's device (usually LOCAL_RANK)

	ConnectTimeout time.Duration // reaching the master and every rank joining; default 60 s
	OpTimeout      time.Duration // each collective, and Gloo's own timeout; default 5 min
	Heartbeat      time.Duration // liveness counter period; default 250 ms
	DeadAfter      time.Duration // a silent peer is lost after this long; default 30 s
	BucketBytes    int64         // AllReduce and Broadcast bucket size; default 25 MiB
}

// Validate reports the first field that cannot work, naming it.
func (c Config) Validate() error {
	switch {
	case c.MasterAddr == "":
		return fmt.Errorf("dist: master address is empty")
	case c.MasterPort <= 0 || c.MasterPort > 65535:
		return fmt.Errorf("dist: master port %d is outside 1..65535", c.MasterPort)
	case c.WorldSize < 1:
		return fmt.Errorf("dist: world size %d is less than 1", c.WorldSize)
	case c.Rank < 0 || c.Rank >= c.WorldSize:
		return fmt.Errorf("dist: rank %d is outside [0, %d) for world size %d", c.Rank, c.WorldSize, c.WorldSize)
	case c.Backend != Gloo && c.Backend != NCCL:
		return fmt.Errorf("dist: unknown backend %d", int(c.Backend))
	case c.ConnectTimeout < 0 || c.OpTimeout < 0 || c.Heartbeat < 0 || c.DeadAfter < 0:
		return fmt.Errorf("dist: negative timeout")
	case c.BucketBytes < 0:
		return fmt.Errorf("dist: bucket size %d is negative", c.BucketBytes)
	}
	return nil
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, 60*time.Second)
	def(&c.OpTimeout, 5*time.Minute)
	def(&c.Heartbeat, 250*time.Millisecond)
	def(&c.DeadAfter, 30*time.Second)
	if c.BucketBytes == 0 {
		c.BucketBytes = DefaultBucketBytes
	}
	if c.Backend == Gloo && c.GlooIface == "" && c.GlooHost == "" && isLoopback(c.MasterAddr) {
		c.GlooHost = "127.0.0.1"
	}
	return c
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LostRankError is a collective that failed because peers died or stopped answering.
type LostRankError struct {
	Op    string // the collective, e.g. "all_reduce"
	Ranks []int  // the ranks found lost, ascending
	Msg   string // the full reason, Gloo's message included
}

func (e *LostRankError) Error() string { return "dist: " + e.Op + ": " + e.Msg }

// Stats are the collectives' totals since New, for logs and benchmarks.
type Stats struct {
	AllReduceCalls int
	AllReduceTime  time.Duration
	LastBuckets    int // buckets of the last AllReduce
	AllGatherCalls int
	AllGatherTime  time.Duration
	BroadcastCalls int
	BroadcastTime  time.Duration
}

// Group is this rank's membership of a process group. Its methods are safe to call from several
// goroutines, one at a time; every rank must call the same collectives in the same order.
type Group struct {
	mu    sync.Mutex
	h     C.hdge_dist_group
	cfg   Config
	stats Stats
	hs    []C.hdge_tensor
}

// New joins the group: rank 0 serves the store on MasterAddr:MasterPort, the others connect, and
// it returns once every rank has joined (or fails within ConnectTimeout, naming the ranks that
// did not).
func New(cfg Config) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if !Available(cfg.Backend) {
		return nil, fmt.Errorf("dist: this shim was built without %v (rebuild it against a libtorch that has it)", cfg.Backend)
	}
	var o C.hdge_dist_options
	addr := C.CString(cfg.MasterAddr)
	defer C.free(unsafe.Pointer(addr))
	iface := C.CString(cfg.GlooIface)
	defer C.free(unsafe.Pointer(iface))
	host := C.CString(cfg.GlooHost)
	defer C.free(unsafe.Pointer(host))
	o.master_addr = addr
	o.port = C.int(cfg.MasterPort)
	o.rank = C.int(cfg.Rank)
	o.world_size = C.int(cfg.WorldSize)
	o.backend = C.int(cfg.Backend)
	o.gloo_iface = iface
	o.gloo_host = host
	o.cuda_device = C.int(cfg.CUDADevice)
	o.connect_timeout_ms = C.int64_t(cfg.ConnectTimeout.Milliseconds())
	o.op_timeout_ms = C.int64_t(cfg.OpTimeout.Milliseconds())
	o.heartbeat_ms = C.int64_t(cfg.Heartbeat.Milliseconds())
	o.dead_after_ms = C.int64_t(cfg.DeadAfter.Milliseconds())
	var h C.hdge_dist_group
	if e := C.hdge_dist_init(&o, &h); e != nil {
		msg := C.GoString(e.msg)
		C.hdge_error_free(e)
		if strings.Contains(msg, "ddress already in use") {
			return nil, fmt.Errorf("dist: rank 0 cannot listen on %s:%d: the port is already in use (choose another --master-port / MASTER_PORT): %s",
				cfg.MasterAddr, cfg.MasterPort, msg)
		}
		return nil, fmt.Errorf("dist: %s", msg)
	}
	return &Group{h: h, cfg: cfg}, nil
}

// Rank is this process's rank.
func (g *Group) Rank() int { return g.cfg.Rank }

// WorldSize is the number of ranks.
func (g *Group) WorldSize() int { return g.cfg.WorldSize }

// Config is the configuration the group runs with, defaults filled in.
func (g *Group) Config() Config { return g.cfg }

// Stats is a copy of the totals so far.
func (g *Group) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

// err converts a C error, asking the group which ranks it lost.
func (g *Group) err(op string, e *C.hdge_error) error {
	msg := strings.TrimSpace(C.GoString(e.msg))
	C.hdge_error_free(e)
	var buf [64]C.int
	n := int(C.hdge_dist_lost(g.h, &buf[0], C.int(len(buf))))
	if n == 0 {
		return &torch.Error{Op: op, Msg: msg}
	}
	ranks := make([]int, min(n, len(buf)))
	for i := range ranks {
		ranks[i] = int(buf[i])
	}
	return &LostRankError{Op: op, Ranks: ranks, Msg: msg}
}

func (g *Group) handles(op string, ts []*torch.Tensor) ([]C.hdge_tensor, error) {
	if g.h == nil {
		return nil, &torch.Error{Op: op, Msg: "group is closed"}
	}
	g.hs = g.hs[:0]
	for i, t := range ts {
		p := t.Handle()
		if p == nil {
			return nil, &torch.Error{Op: op, Msg: "tensor " + strconv.Itoa(i) + " is nil or freed"}
		}
		g.hs = append(g.hs, C.hdge_tensor(p))
	}
	return g.hs, nil
}

// AllReduce combines ts in place across ranks: each tensor ends equal on every rank to the sum
// (or mean) of its values on all ranks. The tensors are packed in order into contiguous buckets of
// BucketBytes, one collective per bucket with all of them in flight at once, as DDP does. For
// gradients pass the parameters' grads (Scope.Grad) with Mean.
func (g *Group) AllReduce(ts []*torch.Tensor, op ReduceOp) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	hs, err := g.handles("AllReduce", ts)
	if err != nil || len(hs) == 0 {
		return err
	}
	start := time.Now()
	var nb C.int64_t
	if e := C.hdge_dist_allreduce(g.h, &hs[0], C.int(len(hs)), C.int(op), C.int64_t(g.cfg.BucketBytes), 0, &nb); e != nil {
		return g.err("AllReduce", e)
	}
	g.stats.AllReduceCalls++
	g.stats.AllReduceTime += time.Since(start)
	g.stats.LastBuckets = int(nb)
	return nil
}

// AllGather returns, in s, every rank's t (the same shape on every rank) concatenated along
// dimension 0 in rank order, as MoCo's concat_all_gather; a scalar counts as shape [1]. The
// result records no autograd.
func (g *Group) AllGather(s *torch.Scope, t *torch.Tensor) (*torch.Tensor, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	hs, err := g.handles("AllGather", []*torch.Tensor{t})
	if err != nil {
		return nil, err
	}
	var out C.hdge_tensor
	start := time.Now()
	if e := C.hdge_dist_allgather(g.h, hs[0], 0, &out); e != nil {
		return nil, g.err("AllGather", e)
	}
	g.stats.AllGatherCalls++
	g.stats.AllGatherTime += time.Since(start)
	r := s.WrapHandle("AllGather", unsafe.Pointer(out))
	if r == nil {
		return nil, s.Err()
	}
	return r, nil
}

// Broadcast overwrites ts in place with root's values (in buckets, without recording autograd):
// what DDP does to the parameters and buffers at construction with root 0.
func (g *Group) Broadcast(ts []*torch.Tensor, root int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	hs, err := g.handles("Broadcast", ts)
	if err != nil || len(hs) == 0 {
		return err
	}
	start := time.Now()
	if e := C.hdge_dist_broadcast(g.h, &hs[0], C.int(len(hs)), C.int(root), C.int64_t(g.cfg.BucketBytes), 0); e != nil {
		return g.err("Broadcast", e)
	}
	g.stats.BroadcastCalls++
	g.stats.BroadcastTime += time.Since(start)
	return nil
}

// Barrier returns once every rank has called it.
func (g *Group) Barrier() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.h == nil {
		return &torch.Error{Op: "Barrier", Msg: "group is closed"}
	}
	if e := C.hdge_dist_barrier(g.h, 0); e != nil {
		return g.err("Barrier", e)
	}
	return nil
}

// Lost is the ranks the group found lost (nil while healthy).
func (g *Group) Lost() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.h == nil {
		return nil
	}
	var buf [64]C.int
	n := min(int(C.hdge_dist_lost(g.h, &buf[0], C.int(len(buf)))), len(buf))
	var out []int
	for i := 0; i < n; i++ {
		out = append(out, int(buf[i]))
	}
	return out
}

// Close leaves the group. On a healthy group rank 0 waits (up to ConnectTimeout) for the others
// to close before it takes the store down, so call it on every rank. It is idempotent.
func (g *Group) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.h != nil {
		C.hdge_dist_close(g.h)
		g.h = nil
	}
}
