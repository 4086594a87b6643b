package launch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Env is what one worker process learns from its environment: torchrun's contract, which Launch
// follows too.
type Env struct {
	MasterAddr     string // MASTER_ADDR
	MasterPort     int    // MASTER_PORT
	Rank           int    // RANK: this process's place among all processes of all nodes
	WorldSize      int    // WORLD_SIZE
	LocalRank      int    // LOCAL_RANK: its place on this node (the CUDA device it uses)
	LocalWorldSize int    // LOCAL_WORLD_SIZE
}

// The variables of the contract; Launch replaces any the launcher itself was started with.
var contractVars = []string{"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK"}

// FromEnv reads the worker contract through getenv (os.Getenv). ok is false when neither RANK
// nor WORLD_SIZE is set: the process was not started as a worker. A partial or inconsistent
// contract is an error naming the variable.
func FromEnv(getenv func(string) string) (e Env, ok bool, err error) {
	if getenv("RANK") == "" && getenv("WORLD_SIZE") == "" {
		return Env{}, false, nil
	}
	num := func(name string, def int, required bool) (int, error) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			if required {
				return 0, fmt.Errorf("%s is not set (RANK and WORLD_SIZE are, so this is a worker: torchrun and --nproc-per-node set all of MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK)", name)
			}
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not an integer", name, v)
		}
		return n, nil
	}
	if e.WorldSize, err = num("WORLD_SIZE", 0, true); err != nil {
		return Env{}, false, err
	}
	if e.Rank, err = num("RANK", 0, true); err != nil {
		return Env{}, false, err
	}
	if e.WorldSize < 1 {
		return Env{}, false, fmt.Errorf("WORLD_SIZE=%d is less than 1", e.WorldSize)
	}
	if e.Rank < 0 || e.Rank >= e.WorldSize {
		return Env{}, false, fmt.Errorf("RANK=%d is outside [0, WORLD_SIZE=%d)", e.Rank, e.WorldSize)
	}
	// Without LOCAL_RANK and LOCAL_WORLD_SIZE the world is taken to be one node, where the rank is
	// also the local rank (torchrun always sets both).
	if e.LocalRank, err = num("LOCAL_RANK", e.Rank, false); err != nil {
		return Env{}, false, err
	}
	if e.LocalWorldSize, err = num("LOCAL_WORLD_SIZE", e.WorldSize, false); err != nil {
		return Env{}, false, err
	}
	if e.LocalRank < 0 || e.LocalRank >= e.LocalWorldSize {
		return Env{}, false, fmt.Errorf("LOCAL_RANK=%d is outside [0, LOCAL_WORLD_SIZE=%d)", e.LocalRank, e.LocalWorldSize)
	}
	e.MasterAddr = strings.TrimSpace(getenv("MASTER_ADDR"))
	if e.WorldSize > 1 && e.MasterAddr == "" {
		return Env{}, false, fmt.Errorf("MASTER_ADDR is not set (the address of the machine of rank 0)")
	}
	if e.MasterPort, err = num("MASTER_PORT", 0, e.WorldSize > 1); err != nil {
		return Env{}, false, err
	}
	if e.WorldSize > 1 && (e.MasterPort < 1 || e.MasterPort > 65535) {
		return Env{}, false, fmt.Errorf("MASTER_PORT=%d is outside 1..65535", e.MasterPort)
	}
	return e, true, nil
}

// Flags are the launcher's settings, named as torchrun's flags.
type Flags struct {
	NProcPerNode int    // --nproc-per-node: worker processes started on this machine
	NNodes       int    // --nnodes: machines taking part
	NodeRank     int    // --node-rank: this machine's index, 0 on the machine of rank 0
	MasterAddr   string // --master-addr: rank 0's machine as the others reach it
	MasterPort   int    // --master-port: its store's port; 0 on one machine picks a free port
}

// Validate names the flag that cannot work.
func (f Flags) Validate() error {
	switch {
	case f.NProcPerNode < 1:
		return fmt.Errorf("--nproc-per-node %d: want at least 1", f.NProcPerNode)
	case f.NNodes < 1:
		return fmt.Errorf("--nnodes %d: want at least 1", f.NNodes)
	case f.NodeRank < 0 || f.NodeRank >= f.NNodes:
		return fmt.Errorf("--node-rank %d is outside [0, --nnodes %d)", f.NodeRank, f.NNodes)
	case f.MasterPort < 0 || f.MasterPort > 65535:
		return fmt.Errorf("--master-port %d is outside 0..65535", f.MasterPort)
	case f.NNodes > 1 && (f.MasterAddr == "" || isLoopback(f.MasterAddr)):
		return fmt.Errorf("--nnodes %d needs --master-addr: the address of node 0 as every node reaches it (got %q)", f.NNodes, f.MasterAddr)
	case f.NNodes > 1 && f.MasterPort == 0:
		return fmt.Errorf("--nnodes %d needs --master-port: the same free port on node 0 for every node", f.NNodes)
	}
	return nil
}

// WorldSize is the number of processes over all nodes.
func (f Flags) WorldSize() int { return f.NNodes * f.NProcPerNode }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckPort reports whether the master's store could listen on port on this machine, as a clear
// error naming the flag when another process holds it.
func CheckPort(port int) error {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--master-port / MASTER_PORT %d is already in use on this machine (another run or service holds it): choose another port", port)
		}
		return fmt.Errorf("--master-port / MASTER_PORT %d: cannot listen: %w", port, err)
	}
	return l.Close()
}

// FreePort is a TCP port nothing listens on at the moment, on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Options says what Launch starts and where its output goes.
type Options struct {
	Exe      string    // the worker program; empty: this executable
	Args     []string  // its arguments, without the program name
	ExtraEnv []string  // added to each worker's environment (e.g. OMP_NUM_THREADS=1)
	Stdout   io.Writer // default os.Stdout; rank 0 writes here unchanged (progress bars stay)
	Stderr   io.Writer // default os.Stderr; other ranks' lines get a "[rank N] " prefix
	// After a worker failed, the others get Grace to stop on their own (they see the lost rank),
	// then SIGTERM, then after Grace again SIGKILL. After an interrupt the same, from SIGINT.
	// Default 60 s.
	Grace time.Duration
}

// ErrInterrupted is returned (wrapped) when ctx ended the launch: every worker was sent SIGINT.
var ErrInterrupted = errors.New("interrupted")

// WorkerError is the first worker that ended badly.
type WorkerError struct {
	Rank   int
	Pid    int
	Status string // "exit status 3", "signal: killed"
	Code   int    // exit code, -1 when killed by a signal
}

func (e *WorkerError) Error() string {
	return fmt.Sprintf("rank %d (pid %d) failed: %s", e.Rank, e.Pid, e.Status)
}

// Launch starts f.NProcPerNode workers of this node with the contract's variables set (ranks
// NodeRank*NProcPerNode ... +NProcPerNode-1), forwards their output, and waits for all of them.
// When ctx ends (the caller's SIGINT/SIGTERM handler), every worker gets one SIGINT: they are in
// a process group of their own, so a terminal's Ctrl-C reaches them only through here. When one
// worker fails, the error names it; the others are stopped after the grace period if they have
// not stopped by themselves.
func Launch(ctx context.Context, f Flags, o Options) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("launch: finding this executable: %w", err)
		}
		o.Exe = exe
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Grace <= 0 {
		o.Grace = 60 * time.Second
	}
	if f.MasterAddr == "" {
		f.MasterAddr = "127.0.0.1"
	}
	if f.NodeRank == 0 {
		if f.MasterPort == 0 {
			p, err := FreePort()
			if err != nil {
				return fmt.Errorf("launch: choosing a master port: %w", err)
			}
			f.MasterPort = p
		} else if err := CheckPort(f.MasterPort); err != nil {
			return err
		}
	}
	base := make([]string, 0, len(os.Environ())+len(o.ExtraEnv)+8)
	for _, kv := range os.Environ() {
		keep := true
		for _, v := range contractVars {
			if strings.HasPrefix(kv, v+"=") {
				keep = false
			}
		}
		if keep {
			base = append(base, kv)
		}
	}
	base = append(base, o.ExtraEnv...)

	var outMu sync.Mutex
	type result struct {
		local int
		err   error
	}
	results := make(chan result, f.NProcPerNode)
	cmds := make([]*exec.Cmd, f.NProcPerNode)
	flushers := make([]sync.WaitGroup, f.NProcPerNode)
	stopAll := func(sig syscall.Signal) {
		for _, c := range cmds {
			if c != nil && c.Process != nil && c.ProcessState == nil {
				_ = c.Process.Signal(sig)
			}
		}
	}
	for l := 0; l < f.NProcPerNode; l++ {
		rank := f.NodeRank*f.NProcPerNode + l
		c := exec.Command(o.Exe, o.Args...)
		c.Env = append(append([]string(nil), base...),
			"MASTER_ADDR="+f.MasterAddr, "MASTER_PORT="+strconv.Itoa(f.MasterPort),
			"RANK="+strconv.Itoa(rank), "WORLD_SIZE="+strconv.Itoa(f.WorldSize()),
			"LOCAL_RANK="+strconv.Itoa(l), "LOCAL_WORLD_SIZE="+strconv.Itoa(f.NProcPerNode),
			"GROUP_RANK="+strconv.Itoa(f.NodeRank))
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if rank == 0 {
			c.Stdout, c.Stderr = o.Stdout, o.Stderr
		} else {
			so, err := c.StdoutPipe()
			if err != nil {
				stopAll(syscall.SIGKILL)
				return err
			}
			se, err := c.StderrPipe()
			if err != nil {
				stopAll(syscall.SIGKILL)
				return err
			}
			prefix := fmt.Sprintf("[rank %d] ", rank)
			for _, pr := range []struct {
				r io.Reader
				w io.Writer
			}{{so, o.Stdout}, {se, o.Stderr}} {
				flushers[l].Add(1)
				go func(r io.Reader, w io.Writer, wg *sync.WaitGroup) {
					defer wg.Done()
					sc := bufio.NewScanner(r)
					sc.Buffer(make([]byte, 64<<10), 1<<20)
					for sc.Scan() {
						outMu.Lock()
						fmt.Fprintf(w, "%s%s\n", prefix, sc.Bytes())
						outMu.Unlock()
					}
				}(pr.r, pr.w, &flushers[l])
			}
		}
		if err := c.Start(); err != nil {
			stopAll(syscall.SIGKILL)
			return fmt.Errorf("launch: starting rank %d: %w", rank, err)
		}
		cmds[l] = c
	}
	// Wait only after the start loop: exec's Wait closes the pipes, which must be read first.
	for l, c := range cmds {
		go func(l int, c *exec.Cmd) {
			flushers[l].Wait()
			results <- result{l, c.Wait()}
		}(l, c)
	}

	var first *WorkerError
	interrupted := false
	running := f.NProcPerNode
	var escalate <-chan time.Time
	termSent := false
	done := ctx.Done()
	for running > 0 {
		select {
		case <-done:
			done = nil
			interrupted = true
			stopAll(syscall.SIGINT)
			if escalate == nil {
				escalate = time.After(o.Grace)
			}
		case r := <-results:
			running--
			if r.err != nil && first == nil && !interrupted {
				c := cmds[r.local]
				we := &WorkerError{Rank: f.NodeRank*f.NProcPerNode + r.local, Pid: c.Process.Pid, Status: r.err.Error(), Code: -1}
				if c.ProcessState != nil {
					we.Code = c.ProcessState.ExitCode()
				}
				first = we
				escalate = time.After(o.Grace)
			}
		case <-escalate:
			if !termSent {
				termSent = true
				stopAll(syscall.SIGTERM)
				escalate = time.After(o.Grace)
			} else {
				stopAll(syscall.SIGKILL)
				escalate = nil
			}
		}
	}
	switch {
	case first != nil:
		return first
	case interrupted:
		return fmt.Errorf("launch: %w: every worker was sent SIGINT and has stopped", ErrInterrupted)
	}
	return nil
}
