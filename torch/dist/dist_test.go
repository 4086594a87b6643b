package dist_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/dist"
)

// The multi-process tests start this test binary again with HDGE_DIST_TEST_ROLE set: TestMain then
// runs that role as one rank of a real group over 127.0.0.1 and exits.
func TestMain(m *testing.M) {
	if role := os.Getenv("HDGE_DIST_TEST_ROLE"); role != "" {
		if err := runRole(role); err != nil {
			fmt.Fprintln(os.Stderr, "worker error:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func envInt(k string) int {
	v, _ := strconv.Atoi(os.Getenv(k))
	return v
}

func workerConfig() dist.Config {
	return dist.Config{
		MasterAddr:     "127.0.0.1",
		MasterPort:     envInt("MASTER_PORT"),
		Rank:           envInt("RANK"),
		WorldSize:      envInt("WORLD_SIZE"),
		ConnectTimeout: 20 * time.Second,
		OpTimeout:      20 * time.Second,
		Heartbeat:      100 * time.Millisecond,
		BucketBytes:    int64(envInt("BUCKET_BYTES")),
		DeadAfter:      time.Duration(envInt("DEAD_AFTER_MS")) * time.Millisecond,
	}
}

func runRole(role string) error {
	g, err := dist.New(workerConfig())
	if err != nil {
		return err
	}
	defer g.Close()
	switch role {
	case "collectives":
		return collectives(g)
	case "loop":
		return loop(g)
	case "ddp":
		return ddpWorker(g)
	case "bench":
		return benchWorker(g)
	}
	return fmt.Errorf("unknown role %q", role)
}

// sizes spans several 64 KiB buckets, one tensor larger than a bucket, and tiny ones.
var sizes = [][]int64{{3}, {64, 32, 3, 3}, {10}, {40000}, {1}, {128, 64}, {7, 5}, {20000}, {1000}}

func value(rank, tensor, i int) float32 {
	return float32(rank+1)*0.5 + float32(tensor) + float32(i%97)*0.01
}

func collectives(g *dist.Group) error {
	s := torch.NewScope()
	defer s.Close()
	r, w := g.Rank(), g.WorldSize()
	ts := make([]*torch.Tensor, len(sizes))
	for k, sh := range sizes {
		n := int64(1)
		for _, d := range sh {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = value(r, k, i)
		}
		ts[k] = s.FromFloat32(v, sh...)
	}
	// A float64 tensor makes a bucket of its own dtype.
	ts = append(ts, s.FromFloat64([]float64{float64(r) + 1, 10 * (float64(r) + 1)}, 2))
	if err := s.Err(); err != nil {
		return err
	}
	if err := g.AllReduce(ts, dist.Mean); err != nil {
		return err
	}
	if nb := g.Stats().LastBuckets; nb < 4 {
		return fmt.Errorf("all-reduce used %d buckets, want several", nb)
	}
	for k := range sizes {
		got, err := ts[k].Float32s()
		if err != nil {
			return err
		}
		for i, x := range got {
			var want float64
			for q := 0; q < w; q++ {
				want += float64(value(q, k, i))
			}
			want /= float64(w)
			if math.Abs(float64(x)-want) > 1e-5 {
				return fmt.Errorf("tensor %d element %d: mean %v, want %v", k, i, x, want)
			}
		}
	}
	d, _ := ts[len(sizes)].Float64s()
	if want := float64(w+1) / 2; d[0] != want || d[1] != 10*want {
		return fmt.Errorf("float64 tensor mean %v, want [%v %v]", d, want, 10*want)
	}
	sum := []*torch.Tensor{s.Full([]int64{5}, float64(r+1), torch.Float32, torch.CPU)}
	if err := g.AllReduce(sum, dist.Sum); err != nil {
		return err
	}
	sv, _ := sum[0].Float32s()
	if want := float32(w * (w + 1) / 2); sv[0] != want {
		return fmt.Errorf("sum %v, want %v", sv[0], want)
	}

	// All-gather: rank q contributes rows q*10+j; the result must be in rank order.
	rows := make([]float32, 3*2)
	for j := range rows {
		rows[j] = float32(r*10 + j)
	}
	all, err := g.AllGather(s, s.FromFloat32(rows, 3, 2))
	if err != nil {
		return err
	}
	if sh := all.Shape(); len(sh) != 2 || sh[0] != int64(3*w) || sh[1] != 2 {
		return fmt.Errorf("all-gather shape %v, want [%d 2]", sh, 3*w)
	}
	av, _ := all.Float32s()
	for q := 0; q < w; q++ {
		for j := 0; j < 6; j++ {
			if av[q*6+j] != float32(q*10+j) {
				return fmt.Errorf("all-gather element %d is %v, want %v (rank order)", q*6+j, av[q*6+j], q*10+j)
			}
		}
	}

	// Broadcast: a parameter that requires grad and an int64 buffer take rank 0's values.
	p := s.FromFloat32([]float32{float32(r), float32(r) + 0.5, -float32(r)}, 3)
	if err := p.SetRequiresGrad(true); err != nil {
		return err
	}
	buf := s.FromInt64([]int64{int64(r) * 7, 3}, 2)
	if err := g.Broadcast([]*torch.Tensor{p, buf}, 0); err != nil {
		return err
	}
	pv, _ := p.Float32s()
	bv, _ := buf.Int64s()
	if pv[0] != 0 || pv[1] != 0.5 || pv[2] != 0 || bv[0] != 0 || bv[1] != 3 || !p.RequiresGrad() {
		return fmt.Errorf("after broadcast rank %d has %v %v, want rank 0's [0 0.5 0] [0 3]", r, pv, bv)
	}
	if err := g.Barrier(); err != nil {
		return err
	}
	fmt.Println("collectives ok")
	return nil
}

// loop all-reduces until it fails, reporting the first success so that the test knows when to
// kill a rank, and the failure in a line the test parses.
func loop(g *dist.Group) error {
	s := torch.NewScope()
	defer s.Close()
	t := []*torch.Tensor{s.Ones([]int64{1 << 16}, torch.Float32, torch.CPU)}
	for i := 0; ; i++ {
		if err := g.AllReduce(t, dist.Mean); err != nil {
			var lost *dist.LostRankError
			if errors.As(err, &lost) {
				fmt.Printf("LOST %v after %d steps: %v\n", lost.Ranks, i, err)
				return nil
			}
			return err
		}
		if i == 0 {
			fmt.Println("READY")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freePortErr()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePortErr() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type worker struct {
	cmd *exec.Cmd
	out bytes.Buffer
	err bytes.Buffer
}

func startWorkers(t *testing.T, role string, world int, extraEnv ...string) []*worker {
	t.Helper()
	port := freePort(t)
	ws := make([]*worker, world)
	for r := range ws {
		w := &worker{cmd: exec.Command(os.Args[0], "-test.run=^$")}
		w.cmd.Env = append(os.Environ(), "HDGE_DIST_TEST_ROLE="+role, "MASTER_PORT="+strconv.Itoa(port),
			"RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(world), "OMP_NUM_THREADS=1")
		w.cmd.Env = append(w.cmd.Env, extraEnv...)
		w.cmd.Stderr = &w.err
		ws[r] = w
	}
	return ws
}

func TestCollectivesTwoRanks(t *testing.T) {
	ws := startWorkers(t, "collectives", 2, "BUCKET_BYTES=65536")
	// Rank 1 starts first: under torchrun on two machines nothing orders them, and a rank that
	// finds no store yet must keep trying until its connect timeout.
	for r := len(ws) - 1; r >= 0; r-- {
		w := ws[r]
		w.cmd.Stdout = &w.out
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if r == 1 {
			time.Sleep(1500 * time.Millisecond)
		}
	}
	for r, w := range ws {
		if err := w.cmd.Wait(); err != nil {
			t.Errorf("rank %d: %v\nstdout: %s\nstderr: %s", r, err, w.out.String(), w.err.String())
		} else if !strings.Contains(w.out.String(), "collectives ok") {
			t.Errorf("rank %d did not finish its checks: %s", r, w.out.String())
		}
	}
}

// A rank killed with SIGKILL in the middle of a loop of all-reduces: the other must return an
// error naming it, well within the bound, and exit on its own.
func TestKilledRankIsNamed(t *testing.T) { lostRank(t, syscall.SIGKILL, 15*time.Second) }

// A rank frozen with SIGSTOP keeps its sockets open, as a machine that vanished does: Gloo sees
// nothing, and only the heartbeat can tell; DeadAfter is 2 s here.
func TestFrozenRankIsNamed(t *testing.T) { lostRank(t, syscall.SIGSTOP, 15*time.Second) }

func lostRank(t *testing.T, sig syscall.Signal, bound time.Duration) {
	ws := startWorkers(t, "loop", 2, "DEAD_AFTER_MS=2000")
	lines := make(chan string, 16)
	for r, w := range ws {
		if r == 0 {
			pr, err := w.cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				sc := bufio.NewScanner(pr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
		}
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, w := range ws {
			_ = w.cmd.Process.Kill()
		}
	}()
	timeout := time.After(60 * time.Second)
	select {
	case l := <-lines:
		if l != "READY" {
			t.Fatalf("rank 0 said %q before READY; stderr: %s", l, ws[0].err.String())
		}
	case <-timeout:
		t.Fatalf("the group did not start; stderr 0: %s\nstderr 1: %s", ws[0].err.String(), ws[1].err.String())
	}
	time.Sleep(200 * time.Millisecond)
	if err := ws[1].cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if sig == syscall.SIGKILL {
		_ = ws[1].cmd.Wait()
	}
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("rank 0 ended without reporting a lost rank; stderr: %s", ws[0].err.String())
		}
		if !strings.HasPrefix(l, "LOST [1] ") {
			t.Fatalf("rank 0 reported %q, want the loss of rank 1", l)
		}
		t.Logf("after %v: %s", time.Since(killed).Round(time.Millisecond), l)
	case <-time.After(bound):
		t.Fatalf("rank 0 did not report the lost rank within %v; stderr: %s", bound, ws[0].err.String())
	}
	done := make(chan error, 1)
	go func() { done <- ws[0].cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("rank 0 exited with %v; stderr: %s", err, ws[0].err.String())
		}
	case <-time.After(bound):
		t.Errorf("rank 0 did not exit within %v of reporting the loss", bound)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = dist.New(dist.Config{MasterAddr: "127.0.0.1", MasterPort: port, Rank: 0, WorldSize: 2,
		ConnectTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Fatalf("got %v, want an error saying port %d is already in use", err, port)
	}
}

func TestUnreachableMaster(t *testing.T) {
	port := freePort(t) // closed again: nothing listens there
	const connect = 3 * time.Second
	start := time.Now()
	_, err := dist.New(dist.Config{MasterAddr: "127.0.0.1", MasterPort: port, Rank: 1, WorldSize: 2,
		ConnectTimeout: connect})
	took := time.Since(start)
	want := fmt.Sprintf("cannot reach the store on 127.0.0.1:%d", port)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
	t.Logf("after %v: %v", took, err)
	if took > connect+10*time.Second {
		t.Errorf("failing took %v with a connect timeout of %v", took, connect)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := dist.Config{MasterAddr: "127.0.0.1", MasterPort: 29500, Rank: 1, WorldSize: 2}
	for _, tc := range []struct {
		name string
		edit func(*dist.Config)
		want string
	}{
		{"rank past world", func(c *dist.Config) { c.Rank = 2 }, "rank 2 is outside [0, 2)"},
		{"no port", func(c *dist.Config) { c.MasterPort = 0 }, "master port 0"},
		{"no address", func(c *dist.Config) { c.MasterAddr = "" }, "master address is empty"},
		{"world 0", func(c *dist.Config) { c.WorldSize = 0 }, "world size 0"},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestSingleRankAndLeaks(t *testing.T) {
	before := torch.LiveTensors()
	g, err := dist.New(dist.Config{MasterAddr: "127.0.0.1", MasterPort: freePort(t), Rank: 0, WorldSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	x := s.FromFloat32([]float32{1, 2, 3}, 3)
	if err := g.AllReduce([]*torch.Tensor{x}, dist.Mean); err != nil {
		t.Fatal(err)
	}
	// A caller's mistake is an error that leaves the group usable.
	if err := g.AllReduce([]*torch.Tensor{s.FromBool([]bool{true}, 1)}, dist.Sum); err == nil || !strings.Contains(err.Error(), "bool") {
		t.Errorf("all-reduce of a bool tensor: %v", err)
	}
	all, err := g.AllGather(s, x)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := all.Float32s(); len(v) != 3 || v[2] != 3 {
		t.Errorf("all-gather of one rank: %v", v)
	}
	s.Close()
	g.Close()
	g.Close()
	if err := g.Barrier(); err == nil {
		t.Error("Barrier on a closed group succeeded")
	}
	if n := torch.LiveTensors(); n != before {
		t.Errorf("live tensors %d, want %d", n, before)
	}
}

// Rank 0 alone in a world of 2: the error must say which rank never came.
func TestMissingRankIsNamed(t *testing.T) {
	_, err := dist.New(dist.Config{MasterAddr: "127.0.0.1", MasterPort: freePort(t), Rank: 0, WorldSize: 2,
		ConnectTimeout: 2 * time.Second, OpTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "rank 1 did not join") {
		t.Fatalf("got %v, want rank 1 named as missing", err)
	}
}

// Ranks that disagree on the world size fail at once with both sizes, not after a timeout.
func TestWorldSizeMismatch(t *testing.T) {
	port := freePort(t)
	done := make(chan error, 1)
	go func() {
		g, err := dist.New(dist.Config{MasterAddr: "127.0.0.1", MasterPort: port, Rank: 0, WorldSize: 2,
			ConnectTimeout: 5 * time.Second, OpTimeout: 2 * time.Second})
		if g != nil {
			g.Close()
		}
		done <- err
	}()
	_, err := dist.New(dist.Config{MasterAddr: "127.0.0.1", MasterPort: port, Rank: 1, WorldSize: 3,
		ConnectTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "rank 1 has world size 3 but rank 0 has 2") {
		t.Errorf("got %v, want the two world sizes", err)
	}
	if err := <-done; err == nil {
		t.Error("rank 0 formed a group without rank 1")
	}
}
