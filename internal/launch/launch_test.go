package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Launch's tests start this test binary as the workers; HDGE_LAUNCH_TEST_ROLE picks what a worker
// does.
func TestMain(m *testing.M) {
	switch os.Getenv("HDGE_LAUNCH_TEST_ROLE") {
	case "":
		os.Exit(m.Run())
	case "env":
		e, ok, err := FromEnv(os.Getenv)
		fmt.Printf("ok=%v err=%v rank=%d world=%d local=%d/%d master=%s:%d\n", ok, err, e.Rank, e.WorldSize,
			e.LocalRank, e.LocalWorldSize, e.MasterAddr, e.MasterPort)
		fmt.Fprintf(os.Stderr, "to stderr from %d\n", e.Rank)
		os.Exit(0)
	case "fail-rank-1":
		// Rank 1 fails; the others wait to be stopped, as healthy ranks blocked on it would.
		e, _, _ := FromEnv(os.Getenv)
		if e.Rank == 1 {
			os.Exit(3)
		}
		waitSignal()
	case "interrupt":
		fmt.Println("started")
		waitSignal()
	case "stubborn":
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
		fmt.Println("started")
		time.Sleep(time.Minute)
	}
	os.Exit(0)
}

// waitSignal prints the signals it gets and exits 130 on the first, as the trainer does after
// saving a checkpoint; a second SIGINT would show as a second line.
func waitSignal() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	s := <-c
	time.Sleep(100 * time.Millisecond)
	n := 1
	for len(c) > 0 {
		<-c
		n++
	}
	fmt.Printf("got %v x%d\n", s, n)
	os.Exit(130)
}

// syncBuffer is a bytes.Buffer that the launcher's forwarding goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func opts(role string, out, errw *syncBuffer) Options {
	return Options{Exe: os.Args[0], Args: []string{"-test.run=^$"}, ExtraEnv: []string{"HDGE_LAUNCH_TEST_ROLE=" + role},
		Stdout: out, Stderr: errw, Grace: 300 * time.Millisecond}
}

func TestLaunchSetsContractAndPrefixesOutput(t *testing.T) {
	var out, errw syncBuffer
	t.Setenv("RANK", "7") // the launcher's own contract must not leak into its workers
	if err := Launch(context.Background(), Flags{NProcPerNode: 3, NNodes: 1}, opts("env", &out, &errw)); err != nil {
		t.Fatalf("%v\n%s%s", err, out.String(), errw.String())
	}
	o := out.String()
	port := ""
	for r := 0; r < 3; r++ {
		prefix := ""
		if r > 0 {
			prefix = fmt.Sprintf("[rank %d] ", r)
		}
		want := fmt.Sprintf("%sok=true err=<nil> rank=%d world=3 local=%d/3 master=127.0.0.1:", prefix, r, r)
		i := strings.Index(o, want)
		if i < 0 {
			t.Fatalf("stdout lacks %q:\n%s", want, o)
		}
		p := strings.Fields(o[i+len(want):])[0]
		if port != "" && p != port {
			t.Errorf("ranks were given different ports %s and %s", port, p)
		}
		port = p
		wantErr := fmt.Sprintf("%sto stderr from %d\n", prefix, r)
		if !strings.Contains(errw.String(), wantErr) {
			t.Errorf("stderr lacks %q:\n%s", wantErr, errw.String())
		}
	}
	if n, _ := strconv.Atoi(port); n <= 0 {
		t.Errorf("master port %q was not chosen", port)
	}
}

func TestLaunchNamesFailedRankAndStopsOthers(t *testing.T) {
	var out, errw syncBuffer
	start := time.Now()
	err := Launch(context.Background(), Flags{NProcPerNode: 3, NNodes: 1}, opts("fail-rank-1", &out, &errw))
	var we *WorkerError
	if !errors.As(err, &we) || we.Rank != 1 || we.Code != 3 {
		t.Fatalf("got %v, want rank 1's exit status 3", err)
	}
	if !strings.Contains(err.Error(), "rank 1") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("message %q does not name the rank and its status", err)
	}
	// The healthy ranks got SIGTERM after the grace period.
	if !strings.Contains(out.String(), "[rank 2] got terminated x1") || !strings.Contains(out.String(), "got terminated x1") {
		t.Errorf("the other ranks were not terminated once:\n%s", out.String())
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %v", took)
	}
}

func TestLaunchForwardsInterruptOnce(t *testing.T) {
	var out, errw syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once both workers are up, as a Ctrl-C would.
		for !(strings.Contains(out.String(), "started") && strings.Count(out.String(), "started") >= 2) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	err := Launch(ctx, Flags{NProcPerNode: 2, NNodes: 1}, opts("interrupt", &out, &errw))
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted\n%s", err, out.String())
	}
	if strings.Count(out.String(), "got interrupt x1") != 2 {
		t.Errorf("each worker should get exactly one SIGINT:\n%s", out.String())
	}
}

func TestLaunchKillsStubbornWorkers(t *testing.T) {
	var out, errw syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for strings.Count(out.String(), "started") < 2 {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	err := Launch(ctx, Flags{NProcPerNode: 2, NNodes: 1}, opts("stubborn", &out, &errw))
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("workers that ignore SIGINT and SIGTERM were stopped only after %v", took)
	}
}

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
		want string // error substring, or the Env printed
	}{
		{"not a worker", map[string]string{}, false, ""},
		{"torchrun", map[string]string{"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"},
			true, "{10.0.0.1 29500 3 4 1 2}"},
		{"no local rank", map[string]string{"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1234", "RANK": "1", "WORLD_SIZE": "2"},
			true, "{127.0.0.1 1234 1 2 1 2}"},
		{"rank too big", map[string]string{"MASTER_ADDR": "a", "MASTER_PORT": "1", "RANK": "2", "WORLD_SIZE": "2"}, false, "RANK=2 is outside [0, WORLD_SIZE=2)"},
		{"no port", map[string]string{"MASTER_ADDR": "a", "RANK": "0", "WORLD_SIZE": "2"}, false, "MASTER_PORT is not set"},
		{"no addr", map[string]string{"MASTER_PORT": "5", "RANK": "0", "WORLD_SIZE": "2"}, false, "MASTER_ADDR is not set"},
		{"bad world", map[string]string{"RANK": "0", "WORLD_SIZE": "two"}, false, `WORLD_SIZE="two" is not an integer`},
		{"only rank", map[string]string{"RANK": "0"}, false, "WORLD_SIZE is not set"},
		{"one process", map[string]string{"RANK": "0", "WORLD_SIZE": "1"}, true, "{ 0 0 1 0 1}"},
	} {
		e, ok, err := FromEnv(func(k string) string { return tc.env[k] })
		got := fmt.Sprint(e)
		if err != nil {
			got = err.Error()
		}
		if ok != tc.ok || (tc.want != "" && !strings.Contains(got, tc.want)) || (tc.want == "" && err != nil) {
			t.Errorf("%s: ok=%v %q, want ok=%v %q", tc.name, ok, got, tc.ok, tc.want)
		}
	}
}

func TestFlagsValidate(t *testing.T) {
	for _, tc := range []struct {
		f    Flags
		want string
	}{
		{Flags{NProcPerNode: 2, NNodes: 1}, ""},
		{Flags{NProcPerNode: 0, NNodes: 1}, "--nproc-per-node 0"},
		{Flags{NProcPerNode: 1, NNodes: 2, NodeRank: 2, MasterAddr: "10.0.0.1", MasterPort: 29500}, "--node-rank 2 is outside"},
		{Flags{NProcPerNode: 1, NNodes: 2, MasterAddr: "127.0.0.1", MasterPort: 29500}, "needs --master-addr"},
		{Flags{NProcPerNode: 1, NNodes: 2, MasterAddr: "10.0.0.1"}, "needs --master-port"},
		{Flags{NProcPerNode: 1, NNodes: 1, MasterPort: 70000}, "--master-port 70000"},
		{Flags{NProcPerNode: 4, NNodes: 2, NodeRank: 1, MasterAddr: "10.0.0.1", MasterPort: 29500}, ""},
	} {
		err := tc.f.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.f, err, tc.want)
		}
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	err = Launch(context.Background(), Flags{NProcPerNode: 2, NNodes: 1, MasterPort: port}, Options{Exe: "/bin/false"})
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Fatalf("got %v, want port %d already in use", err, port)
	}
}
