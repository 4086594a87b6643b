package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// The data-parallel command over 127.0.0.1: the launcher's Ctrl-C, a rank killed with -9, and
// the two rendezvous mistakes a user makes. One binary for all of them.
func TestTrainDataParallel(t *testing.T) {
	bin := buildCLI(t)
	tmp := t.TempDir()
	ds := testutil.SmallFashion(t, tmp, 300, 50)
	args := func(run string, extra ...string) []string {
		return append([]string{"train", "--dataset", ds, "--model", "wrn-10-1", "--norm", "none", "--val-size", "50",
			"--batch-size", "8", "--queue-size", "64", "--steps", "100000", "--log-every", "1", "--threads", "1",
			"--tensorboard=false", "--no-progress", "--out", run}, extra...)
	}
	waitFor := func(t *testing.T, what string, cond func() bool, stderr *bytes.Buffer) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s:\n%s", what, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	records := func(run string) int {
		b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
		return strings.Count(string(b), "\n")
	}
	loadable := func(t *testing.T, run string) {
		t.Helper()
		ckpts, _ := filepath.Glob(filepath.Join(run, "checkpoints", "step-*.pt"))
		if len(ckpts) == 0 {
			t.Fatal("no checkpoint")
		}
		s := torch.NewScope()
		defer s.Close()
		if _, err := model.ReadCheckpoint(s, ckpts[len(ckpts)-1]); err != nil {
			t.Fatalf("last checkpoint %s: %v", ckpts[len(ckpts)-1], err)
		}
	}

	t.Run("ctrl-c", func(t *testing.T) {
		run := filepath.Join(t.TempDir(), "run")
		cmd := exec.Command(bin, args(run, "--nproc-per-node", "2")...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "training progress", func() bool { return records(run) >= 3 }, &stderr)
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		// The launcher returns only once every worker has exited.
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
			t.Fatalf("after SIGINT: %v, want exit status %d\n%s", err, exitInterrupted, stderr.String())
		}
		if !strings.Contains(stderr.String(), "interrupted: checkpoint saved") || strings.Contains(stderr.String(), "lost rank") {
			t.Errorf("both ranks should stop at the same step and rank 0 save:\n%s", stderr.String())
		}
		loadable(t, run)
		// Resuming needs the same number of processes; with it, the run goes on.
		res := runCLI(t, bin, nil, "train", "--resume", run, "--steps", "12", "--skip-test")
		if res.code == 0 || !strings.Contains(res.stderr, "global batch 16") || !strings.Contains(res.stderr, "global batch 8") {
			t.Errorf("resuming a 2-process run in one: exit %d, want an error naming both global batches\n%s", res.code, res.stderr)
		}
		res = runCLI(t, bin, nil, "train", "--resume", run, "--steps", "12", "--skip-test", "--nproc-per-node", "2")
		if res.code != 0 || !(strings.Contains(res.stdout, "12 steps") || strings.Contains(res.stdout, "already complete")) {
			t.Errorf("resuming with 2 processes: exit %d\nstdout %s\nstderr %s", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("kill-9", func(t *testing.T) {
		run := filepath.Join(t.TempDir(), "run")
		port := freeTCPPort(t)
		cmds := make([]*exec.Cmd, 2)
		var errs [2]bytes.Buffer
		for r := range cmds {
			c := exec.Command(bin, args(run, "--ckpt-every", "2")...)
			c.Env = append(os.Environ(), "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port),
				"RANK="+strconv.Itoa(r), "WORLD_SIZE=2")
			c.Stdout, c.Stderr = &errs[r], &errs[r]
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			cmds[r] = c
		}
		defer func() {
			for _, c := range cmds {
				_ = c.Process.Kill()
			}
		}()
		waitFor(t, "checkpoint", func() bool {
			l, _ := filepath.Glob(filepath.Join(run, "checkpoints", "step-*.pt"))
			return len(l) > 0 && records(run) >= 5
		}, &errs[0])
		if err := cmds[1].Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmds[1].Wait()
		killed := time.Now()
		done := make(chan error, 1)
		go func() { done <- cmds[0].Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("rank 0 exited 0 after rank 1 was killed:\n%s", errs[0].String())
			}
			t.Logf("rank 0 exited %v after %.1f s", err, time.Since(killed).Seconds())
		case <-time.After(60 * time.Second):
			t.Fatalf("rank 0 still running 60 s after rank 1 was killed:\n%s", errs[0].String())
		}
		if !strings.Contains(errs[0].String(), "lost rank(s) [1]") {
			t.Errorf("rank 0's error does not name rank 1:\n%s", errs[0].String())
		}
		loadable(t, run)
	})

	t.Run("port-in-use", func(t *testing.T) {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		run := filepath.Join(t.TempDir(), "run")
		res := runCLI(t, bin, nil, args(run, "--nproc-per-node", "2", "--master-port", port)...)
		if res.code == 0 || !strings.Contains(res.stderr, port+" is already in use") {
			t.Errorf("launcher on a busy port: exit %d\n%s", res.code, res.stderr)
		}
		// As torchrun's rank 0 would be started.
		res = runCLI(t, bin, []string{"MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port, "RANK=0", "WORLD_SIZE=2"},
			args(run, "--dist-timeout", "5s")...)
		if res.code == 0 || !strings.Contains(res.stderr, "already in use") || !strings.Contains(res.stderr, "MASTER_PORT="+port) {
			t.Errorf("rank 0 on a busy port: exit %d\n%s", res.code, res.stderr)
		}
	})

	t.Run("unreachable-master", func(t *testing.T) {
		port := strconv.Itoa(freeTCPPort(t))
		run := filepath.Join(t.TempDir(), "run")
		start := time.Now()
		res := runCLI(t, bin, []string{"MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port, "RANK=1", "WORLD_SIZE=2"},
			args(run, "--dist-timeout", "3s")...)
		if res.code == 0 || !strings.Contains(res.stderr, "MASTER_ADDR=127.0.0.1 MASTER_PORT="+port) {
			t.Errorf("no master: exit %d\n%s", res.code, res.stderr)
		}
		if el := time.Since(start); el > 30*time.Second {
			t.Errorf("no master: took %v with --dist-timeout 3s", el)
		}
		t.Logf("%s", res.stderr)
	})
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
