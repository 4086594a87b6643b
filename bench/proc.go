package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables that turn an hdgebench binary (or the package's test binary) into a Go
// child: every Go measurement runs in its own process so that its peak resident memory is its
// own and libtorch's process-wide state (threads, allocator caches) starts fresh, as for Python.
const (
	envChild  = "HDGE_BENCH_CHILD"
	envConfig = "HDGE_BENCH_CONFIG"
)

// sampleEvery is how often a child's process tree is measured; Python's DataLoader workers are
// processes, so a child's own getrusage peak does not cover them.
const sampleEvery = 200 * time.Millisecond

// childTimeout bounds one child; a hung child must not hang `make bench`.
const childTimeout = 15 * time.Minute

// launcher starts Go and Python children and measures them.
type launcher struct {
	exe       string // this binary, re-executed for Go children
	python    string
	reference string // the Python reference script written into the work folder
}

// measured is what the parent measures of a finished child, beside what the child reports.
// (The child's own peak comes from the child, as VmHWM: getrusage's ru_maxrss of a child started
// by os/exec is useless here, because Linux carries the high-water mark of the mm replaced at
// exec into it, and os/exec starts children with vfork semantics, so that mm is this parent's.)
type measured struct {
	TreePSSKiB int64   `json:"tree_pss_kib"` // peak of Σ Pss over the child and its descendants, sampled
	WallS      float64 `json:"wall_s"`
}

func (l *launcher) run(ctx context.Context, side string, rc RunConfig) (*RunResult, error) {
	cfg, err := json.Marshal(rc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, childTimeout)
	defer cancel()
	var cmd *exec.Cmd
	switch side {
	case sideGo:
		cmd = exec.CommandContext(ctx, l.exe)
		cmd.Env = append(os.Environ(), envChild+"=1", envConfig+"="+string(cfg))
	case sidePy:
		cmd = exec.CommandContext(ctx, l.python, l.reference, "--config", string(cfg))
		switch rc.Mode {
		case "ddp":
			cmd = exec.CommandContext(ctx, l.python, filepath.Join(filepath.Dir(l.reference), "ddp_reference.py"),
				"--spawn", strconv.Itoa(max(1, rc.World)), "--config", string(cfg))
		case "objectives", "buffer-memory":
			args, err := pyObjectiveCommand(filepath.Dir(l.reference), rc)
			if err != nil {
				return nil, err
			}
			cmd = exec.CommandContext(ctx, l.python, args...)
		}
		cmd.Env = os.Environ()
	default:
		return nil, fmt.Errorf("unknown side %q", side)
	}
	// A child outlives a killed parent otherwise, and keeps measuring into the next run's load.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s %s: starting %s: %w", side, rc.Mode, cmd.Path, err)
	}
	var peak int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			if v := treePSS(cmd.Process.Pid); v > peak {
				peak = v
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	wg.Wait()
	wall := time.Since(t0).Seconds()
	if ctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("%s %s: no result after %v; stderr: %s", side, rc.Mode, childTimeout, tail(stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s (%s): %w; stderr: %s", side, rc.Mode, rc.label(), err, tail(stderr.String()))
	}
	res, err := lastJSON(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w; stderr: %s", side, rc.Mode, err, tail(stderr.String()))
	}
	res.Measured = measured{TreePSSKiB: peak, WallS: wall}
	return res, nil
}

// lastJSON decodes the last line of a child's stdout that is a JSON object.
func lastJSON(out []byte) (*RunResult, error) {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		line := bytes.TrimSpace(lines[i])
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var r RunResult
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("result line is not valid JSON: %w", err)
		}
		return &r, nil
	}
	return nil, fmt.Errorf("no JSON result on stdout (%d bytes of output)", len(out))
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// treePSS sums the proportional set size of pid and all its descendants, in KiB. Pss splits pages
// shared between processes (libtorch's code in forked DataLoader workers) among them, so the sum
// is the tree's real footprint; where smaps_rollup is unreadable, VmRSS stands in.
func treePSS(root int) int64 {
	var total int64
	for _, pid := range descendants(root) {
		if v := procKiB(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"), "Pss"); v >= 0 {
			total += v
		} else if v := procKiB(filepath.Join("/proc", strconv.Itoa(pid), "status"), "VmRSS"); v >= 0 {
			total += v
		}
	}
	return total
}

// descendants lists root and every process below it, from the parent links in /proc/*/stat.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces: fields start after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// procKiB reads a "Key:   123 kB" line from a /proc file; -1 if absent.
func procKiB(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return -1
			}
			v, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return -1
			}
			return v
		}
	}
	return -1
}

// selfKiB reads a field of this process's /proc/self/status (VmRSS, VmHWM).
func selfKiB(key string) int64 { return procKiB("/proc/self/status", key) }

// resetPeak restarts this process's VmHWM at its current resident set (Linux ≥ 4.0), so that a
// measurement's peak excludes what setting it up cost. It reports whether that worked.
func resetPeak() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// lockWork takes an exclusive lock on the work folder for the life of the process: two runs
// sharing one would overwrite each other's files and measure each other's load.
func lockWork(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another benchmark is running in %s (%v)", dir, err)
	}
	return f, nil
}
