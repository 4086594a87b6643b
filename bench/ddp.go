package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hdge-torch/hdge-torch/internal/launch"
	"github.com/hdge-torch/hdge-torch/torch/dist"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// ddpCase is the data-parallel section: one training configuration run as 1 process × 1 thread,
// 1 process × 2 threads and 2 processes × 1 thread on both sides (hdge-torch's trainer over c10d
// Gloo; PyTorch's DistributedDataParallel over gloo, ddp_reference.py).
type ddpCase struct {
	Data        string
	Model       string
	Norm        string
	Objective   string
	Batch       int // per process at one thread; the two-thread process gets the two processes' global batch
	QueueSize   int
	WarmupSteps int
	Steps       int
	Reps        int
}

// DDPRow is one layout of processes and threads.
type DDPRow struct {
	Layout          string  `json:"layout"`
	Processes       int     `json:"processes"`
	Threads         int     `json:"threads"`
	BatchPerProcess int     `json:"batch_per_process"`
	GoImgPerS       float64 `json:"go_img_s"`
	PyImgPerS       float64 `json:"python_img_s"`
	Speedup         float64 `json:"speedup"`
	// Efficiency is img/s over twice the 1 × 1 layout's: the share of a second core's worth gained.
	GoEfficiency float64 `json:"go_efficiency,omitempty"`
	PyEfficiency float64 `json:"python_efficiency,omitempty"`
	// AllReduceMS: Go, the loop's collectives per step (the bucketed gradient all-reduce and the
	// stop flag, waiting for the slower rank included); Python, one all-reduce of the gradients in
	// DDP's buckets timed after a barrier, as ddp_reference.py measures it.
	GoAllReduceMS float64 `json:"go_allreduce_ms,omitempty"`
	PyAllReduceMS float64 `json:"python_allreduce_ms,omitempty"`
}

func ddpSuite(quick bool) ddpCase {
	if quick {
		return ddpCase{Data: "fashion-mnist", Model: "wrn-10-1", Norm: "none", Objective: "hdge", Batch: 16, QueueSize: 256,
			WarmupSteps: 1, Steps: 2, Reps: 1}
	}
	cpu := trainer.Defaults()
	return ddpCase{Data: "fashion-mnist", Model: cpu.Model, Norm: cpu.Norm, Objective: "hdge", Batch: 64, QueueSize: 65536,
		WarmupSteps: 2, Steps: 10, Reps: 2}
}

// dataParallel runs the section's rows.
func (r *runner) dataParallel() error {
	dc := ddpSuite(r.su.Quick)
	if r.o.Reps > 0 {
		dc.Reps = r.o.Reps
	}
	layouts := []struct{ procs, threads int }{{1, 1}, {1, 2}, {2, 1}}
	goImgs, pyImgs := make([][]float64, len(layouts)), make([][]float64, len(layouts))
	goAR, pyAR := make([][]float64, len(layouts)), make([][]float64, len(layouts))
	for rep := range dc.Reps {
		for i, l := range layouts {
			rc := r.base("ddp")
			spec := r.ds.train[dc.Data]
			rc.Dataset = &spec
			rc.Augment = AugmentSpec{Crop: 4, Flip: true, Noise: 0.03}
			rc.Model, rc.Norm, rc.Objective, rc.QueueSize = dc.Model, dc.Norm, dc.Objective, dc.QueueSize
			rc.Threads, rc.World, rc.Batch = l.threads, l.procs, dc.Batch*l.threads
			rc.WarmupSteps, rc.Steps = dc.WarmupSteps, dc.Steps
			rc.Dir = filepath.Join(r.work, "runs", fmt.Sprintf("ddp-%dx%d-rep%d", l.procs, l.threads, rep))
			if err := os.RemoveAll(rc.Dir); err != nil {
				return err
			}
			if err := os.MkdirAll(rc.Dir, 0o755); err != nil {
				return err
			}
			g, p, err := r.pair(rep, rc, rc)
			if err != nil {
				return err
			}
			goImgs[i] = append(goImgs[i], g.GlobalImgS)
			pyImgs[i] = append(pyImgs[i], p.GlobalImgS)
			goAR[i] = append(goAR[i], g.AllReduceS...)
			pyAR[i] = append(pyAR[i], p.AllReduceS...)
			if err := os.RemoveAll(rc.Dir); err != nil {
				return err
			}
		}
	}
	for i, l := range layouts {
		row := DDPRow{Layout: fmt.Sprintf("%d process(es) × %d thread(s)", l.procs, l.threads), Processes: l.procs, Threads: l.threads,
			BatchPerProcess: dc.Batch * l.threads, GoImgPerS: median(goImgs[i]), PyImgPerS: median(pyImgs[i])}
		row.Speedup = ratio(row.GoImgPerS, row.PyImgPerS)
		if i > 0 {
			row.GoEfficiency = ratio(row.GoImgPerS, 2*median(goImgs[0]))
			row.PyEfficiency = ratio(row.PyImgPerS, 2*median(pyImgs[0]))
		}
		if l.procs > 1 {
			row.GoAllReduceMS, row.PyAllReduceMS = 1000*median(goAR[i]), 1000*median(pyAR[i])
		}
		r.res.DDP = append(r.res.DDP, row)
	}
	return nil
}

// ddpTargets are the two: Go's data-parallel throughput against PyTorch DDP's, and the
// scaling from one to two processes at one thread each.
func ddpTargets(res *Results) []Target {
	var ts []Target
	for _, row := range res.DDP {
		if row.Processes < 2 {
			continue
		}
		ts = append(ts,
			Target{Name: "data-parallel throughput, " + row.Layout, Want: "Go ≥ 1.10 × PyTorch DDP (gloo)",
				Got: fmt.Sprintf("%.2f× (%.1f against %.1f img/s)", row.Speedup, row.GoImgPerS, row.PyImgPerS), Met: row.Speedup >= 1.10},
			Target{Name: "data-parallel scaling efficiency, 1 → 2 processes at 1 thread", Want: "≥ 0.9",
				Got: fmt.Sprintf("Go %.2f, Python %.2f", row.GoEfficiency, row.PyEfficiency), Met: row.GoEfficiency >= 0.9})
	}
	return ts
}

func ddpMarkdown(res *Results) string {
	if len(res.DDP) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Data-parallel training\n\nOne HDGE configuration as 1 process × 1 thread, 1 process × 2 threads (the " +
		"global batch of two processes) and 2 processes × 1 thread over 127.0.0.1: `hdge-torch train` over c10d Gloo against " +
		"PyTorch's DistributedDataParallel over gloo (bench/ddp_reference.py). img/s counts every rank's images; efficiency is " +
		"img/s over twice the 1 × 1 figure. Go's all-reduce time is the loop's collectives per step, waiting for the other " +
		"rank included; Python's one all-reduce of the gradients after a barrier. hdge-torch does not overlap the all-reduce " +
		"with backward as DDP's reducer does.\n\n")
	b.WriteString("| layout | batch per process | Go img/s | Python img/s | speed-up | Go efficiency | Python efficiency | Go all-reduce ms/step | Python all-reduce ms |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res.DDP {
		eff := func(x float64) string {
			if x == 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f", x)
		}
		ar := func(x float64) string {
			if r.Processes < 2 {
				return "—"
			}
			return fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | %.1f | %.2f× | %s | %s | %s | %s |\n", r.Layout, r.BatchPerProcess, r.GoImgPerS,
			r.PyImgPerS, r.Speedup, eff(r.GoEfficiency), eff(r.PyEfficiency), ar(r.GoAllReduceMS), ar(r.PyAllReduceMS))
	}
	return b.String()
}

// goDDP is the Go child of a data-parallel row. With World > 1 it is first the launcher: it starts
// itself once per rank (the environment carries the configuration), waits, and reads rank 0's
// metrics; each rank then trains as `hdge-torch train` would, with a c10d group.
func goDDP(rc RunConfig) (*RunResult, error) {
	if rc.Dataset == nil {
		return nil, fmt.Errorf("no dataset")
	}
	world := max(1, rc.World)
	env, isWorker, err := launch.FromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	if world > 1 && !isWorker {
		if err := launch.Launch(context.Background(), launch.Flags{NProcPerNode: world, NNodes: 1},
			launch.Options{Args: os.Args[1:], Stdout: os.Stderr}); err != nil {
			return nil, err
		}
		return readDDP(rc, world)
	}
	cfg := trainerConfig(rc)
	if cfg.Dataset, err = rc.Dataset.goSpec(); err != nil {
		return nil, err
	}
	var grp trainer.Group
	var g *dist.Group
	if world > 1 {
		if g, err = dist.New(dist.Config{MasterAddr: env.MasterAddr, MasterPort: env.MasterPort, Rank: env.Rank,
			WorldSize: env.WorldSize, Backend: dist.Gloo}); err != nil {
			return nil, err
		}
		defer g.Close()
		grp = g
	}
	if _, err := trainer.Train(context.Background(), cfg, trainer.Options{SkipTest: true, Group: grp}); err != nil {
		return nil, err
	}
	if g != nil && g.Rank() == 0 {
		st := g.Stats()
		steps := float64(rc.WarmupSteps + rc.Steps)
		b, _ := json.Marshal([]float64{st.AllReduceTime.Seconds() / steps})
		if err := os.WriteFile(filepath.Join(rc.Dir, "allreduce.json"), b, 0o644); err != nil {
			return nil, err
		}
	}
	if isWorker {
		return &RunResult{}, nil // the launcher reports
	}
	return readDDP(rc, world)
}

// readDDP turns rank 0's metrics (one record per step, img/s of every rank's images) into the
// row's figures.
func readDDP(rc RunConfig, world int) (*RunResult, error) {
	res, err := readStepTimes(rc, rc.Batch*world)
	if err != nil {
		return nil, err
	}
	res.GlobalImgS = float64(res.Batch*len(res.StepS)) / sum(res.StepS)
	if world > 1 {
		b, err := os.ReadFile(filepath.Join(rc.Dir, "allreduce.json"))
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &res.AllReduceS); err != nil {
			return nil, err
		}
	}
	return res, nil
}
