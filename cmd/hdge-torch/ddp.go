package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hdge-torch/hdge-torch/internal/launch"
	"github.com/hdge-torch/hdge-torch/torch/dist"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// The data-parallel flags are the CLI's, not settings of the run: they say how processes are
// started, which a worker (started with them still on its command line) and an experiment spec
// must not act on, and a run's result does not depend on them beyond the world size, which the
// checkpoint records. torchrun's names, so a job script reads the same either way.
var ddpFlags = []cli.Flag{
	&cli.IntFlag{Name: "nproc-per-node", Value: 1, Category: "data-parallel", Usage: "worker processes on this machine; --batch-size is per process (torchrun's flag)"},
	&cli.IntFlag{Name: "nnodes", Value: 1, Category: "data-parallel", Usage: "machines taking part, each started with the same command and its own --node-rank"},
	&cli.IntFlag{Name: "node-rank", Value: 0, Category: "data-parallel", Usage: "this machine's index, 0 on the machine of rank 0"},
	&cli.StringFlag{Name: "master-addr", Value: "127.0.0.1", Category: "data-parallel", Usage: "the address of node 0 as every node reaches it"},
	&cli.IntFlag{Name: "master-port", Value: 0, Category: "data-parallel", Usage: "the rendezvous port on node 0 (0 on one machine: a free one)"},
	&cli.DurationFlag{Name: "dist-timeout", Value: 60 * time.Second, Category: "data-parallel", Usage: "how long a worker waits for the master and for every rank to join"},
}

func init() { cliOnlyTrainFlags = append(cliOnlyTrainFlags, ddpFlags...) }

// ddpWorker is this process's place in data-parallel training; the zero value (nil group) is a
// run in one process.
type ddpWorker struct {
	env   launch.Env
	group *dist.Group
}

func (w *ddpWorker) leader() bool { return w.group == nil || w.group.Rank() == 0 }

func (w *ddpWorker) close() {
	if w.group != nil {
		w.group.Close()
	}
}

// startDataParallel decides what this train process is. A launcher (world > 1 from the flags and
// no worker environment) starts the workers, waits for them and returns launched = true with the
// outcome. A worker (torchrun's environment, set by torchrun or by the launcher) joins the group.
// Anything else is a plain run.
func startDataParallel(c *cli.Context) (w *ddpWorker, launched bool, err error) {
	env, isWorker, err := launch.FromEnv(os.Getenv)
	if err != nil {
		return nil, false, cli.Exit("torchrun environment: "+err.Error(), 2)
	}
	if !isWorker {
		f := launch.Flags{NProcPerNode: c.Int("nproc-per-node"), NNodes: c.Int("nnodes"), NodeRank: c.Int("node-rank"),
			MasterAddr: c.String("master-addr"), MasterPort: c.Int("master-port")}
		if err := f.Validate(); err != nil {
			return nil, false, cli.Exit(err.Error(), 2)
		}
		if f.WorldSize() == 1 {
			return &ddpWorker{}, false, nil
		}
		return nil, true, launchWorkers(c, f)
	}
	w = &ddpWorker{env: env}
	if env.WorldSize == 1 {
		return w, false, nil
	}
	backend := dist.Gloo
	if strings.HasPrefix(c.String("device"), "cuda") {
		backend = dist.NCCL
	}
	g, err := dist.New(dist.Config{MasterAddr: env.MasterAddr, MasterPort: env.MasterPort, Rank: env.Rank,
		WorldSize: env.WorldSize, Backend: backend, CUDADevice: env.LocalRank, ConnectTimeout: c.Duration("dist-timeout"),
		// The other ranks wait in their next collective while rank 0 validates and saves: a
		// collective may take that long. A dead or frozen rank is still found by the heartbeat,
		// within dist's DeadAfter (30 s).
		OpTimeout: 30 * time.Minute})
	if err != nil {
		return nil, false, cli.Exit(fmt.Sprintf("rank %d of %d: joining the process group at MASTER_ADDR=%s MASTER_PORT=%d: %v",
			env.Rank, env.WorldSize, env.MasterAddr, env.MasterPort, err), 1)
	}
	w.group = g
	return w, false, nil
}

// launchWorkers re-executes this command once per local rank with torchrun's environment. Every
// worker gets the same run directory: the default one is named here, once.
func launchWorkers(c *cli.Context, f launch.Flags) error {
	args := slices.Clone(os.Args[1:])
	if !c.IsSet("out") && c.String("resume") == "" {
		obj, _, _ := trainer.DeprecatedObjective(c.String("objective"))
		args = append(args, "--out", defaultRunDir(c.String("dataset"), obj))
	}
	var extra []string
	if !c.IsSet("threads") {
		// Each process gets its share of the cores, as torchrun's OMP_NUM_THREADS does.
		extra = append(extra, "HDGE_DDP_THREADS="+strconv.Itoa(max(1, runtime.NumCPU()/f.NProcPerNode)))
	}
	err := launch.Launch(c.Context, f, launch.Options{Args: args, ExtraEnv: extra})
	var we *launch.WorkerError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, launch.ErrInterrupted):
		return cli.Exit(fmt.Sprintf("%v (rank 0 saved a checkpoint: continue with --resume and the same --nproc-per-node)", err), exitInterrupted)
	case errors.As(err, &we):
		return cli.Exit(fmt.Sprintf("data-parallel training failed: %v (the other ranks were stopped)", err), 1)
	}
	return cli.Exit(err.Error(), 1)
}

// defaultRunDir is --out's default.
func defaultRunDir(dataset, objective string) string {
	name := strings.NewReplacer("/", "_", ":", "_").Replace(dataset)
	return filepath.Join("runs", fmt.Sprintf("%s-%s-%s", name, objective, time.Now().Format("20060102-150405")))
}

// prepare fills in what a worker's configuration takes from its place: its share of the cores
// and, on CUDA, its own device.
func (w *ddpWorker) prepare(cfg *trainer.Config) {
	if w.group == nil {
		return
	}
	if cfg.Threads == 0 {
		n, err := strconv.Atoi(os.Getenv("HDGE_DDP_THREADS"))
		if err != nil || n < 1 {
			n = max(1, runtime.NumCPU()/max(1, w.env.LocalWorldSize))
		}
		cfg.Threads = n
	}
	if cfg.Device == "cuda" {
		cfg.Device = "cuda:" + strconv.Itoa(w.env.LocalRank)
	}
}

// logging is commandLogging for rank 0; the other ranks write nothing to the run directory and
// only their warnings and errors to stderr.
func (w *ddpWorker) logging(c *cli.Context, dir string) (*zap.Logger, io.Writer, error) {
	if w.leader() {
		return commandLogging(c, "--out", dir, "train.log")
	}
	ec := zap.NewDevelopmentEncoderConfig()
	ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(ec), zapcore.Lock(os.Stderr), zap.WarnLevel)
	return zap.New(core).With(zap.Int("rank", w.group.Rank())), nil, nil
}

// trainGroup is the group as the trainer takes it (nil in one process).
func (w *ddpWorker) trainGroup() trainer.Group {
	if w.group == nil {
		return nil
	}
	return w.group
}
