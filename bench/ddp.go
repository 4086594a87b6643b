package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

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
	Model           string  `json:"model"` // with its normalisation, e.g. "wrn-10-2 (batch norm)"
	Layout          string  `json:"layout"`
	Processes       int     `json:"processes"`
	Threads         int     `json:"threads"`
	BatchPerProcess int     `json:"batch_per_process"`
	GoImgPerS       float64 `json:"go_img_s"`
	PyImgPerS       float64 `json:"python_img_s,omitempty"`
	Speedup         float64 `json:"speedup,omitempty"`
	// Efficiency is img/s over twice the 1 × 1 layout's: the share of a second core's worth gained.
	GoEfficiency float64 `json:"go_efficiency,omitempty"`
	PyEfficiency float64 `json:"python_efficiency,omitempty"`
	// AllReduceMS: Go, the loop's gradient all-reduce per step (the stop flag rides in it; waiting
	// for the slower rank included); Python, one all-reduce of the gradients in DDP's buckets timed
	// after a barrier, as ddp_reference.py measures it.
	GoAllReduceMS float64 `json:"go_allreduce_ms,omitempty"`
	PyAllReduceMS float64 `json:"python_allreduce_ms,omitempty"`
	// Independent marks the ceiling row: two single-process runs at once with no communication,
	// what the machine gives two busy cores, against which the efficiency can be read.
	Independent bool `json:"independent,omitempty"`
}

// ddpSuite is the section's configurations: the CPU default (batch norm) and the paper's regime
// (no batch norm), since batch norm changes what a step costs when two ranks run in lockstep.
func ddpSuite(quick bool) []ddpCase {
	if quick {
		return []ddpCase{{Data: "fashion-mnist", Model: "wrn-10-1", Norm: "none", Objective: "hdge", Batch: 16, QueueSize: 256,
			WarmupSteps: 1, Steps: 2, Reps: 1}}
	}
	cpu := trainer.Defaults()
	var out []ddpCase
	for _, norm := range []string{cpu.Norm, "none"} {
		if len(out) > 0 && norm == out[0].Norm {
			continue
		}
		out = append(out, ddpCase{Data: "fashion-mnist", Model: cpu.Model, Norm: norm, Objective: "hdge", Batch: 64, QueueSize: 65536,
			WarmupSteps: 3, Steps: 12, Reps: 2})
	}
	return out
}

// dataParallel runs the section's rows.
func (r *runner) dataParallel() error {
	for _, dc := range ddpSuite(r.su.Quick) {
		if r.o.Reps > 0 {
			dc.Reps = r.o.Reps
		}
		if err := r.dataParallelCase(dc); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) ddpConfig(dc ddpCase, procs, threads int, name string) (RunConfig, error) {
	rc := r.base("ddp")
	spec := r.ds.train[dc.Data]
	rc.Dataset = &spec
	rc.Augment = AugmentSpec{Crop: 4, Flip: true, Noise: 0.03}
	rc.Model, rc.Norm, rc.Objective, rc.QueueSize = dc.Model, dc.Norm, dc.Objective, dc.QueueSize
	rc.Threads, rc.World, rc.Batch = threads, procs, dc.Batch*threads
	rc.WarmupSteps, rc.Steps = dc.WarmupSteps, dc.Steps
	rc.Dir = filepath.Join(r.work, "runs", name)
	if err := os.RemoveAll(rc.Dir); err != nil {
		return rc, err
	}
	return rc, os.MkdirAll(rc.Dir, 0o755)
}

func (r *runner) dataParallelCase(dc ddpCase) error {
	layouts := []struct{ procs, threads int }{{1, 1}, {1, 2}, {2, 1}}
	goImgs, pyImgs := make([][]float64, len(layouts)), make([][]float64, len(layouts))
	goAR, pyAR := make([][]float64, len(layouts)), make([][]float64, len(layouts))
	var indep []float64
	for rep := range dc.Reps {
		for i, l := range layouts {
			rc, err := r.ddpConfig(dc, l.procs, l.threads, fmt.Sprintf("ddp-%s-%dx%d-rep%d", dc.Norm, l.procs, l.threads, rep))
			if err != nil {
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
		v, err := r.independentPair(dc, rep)
		if err != nil {
			return err
		}
		indep = append(indep, v)
	}
	name := modelName(dc.Model, dc.Norm)
	base := median(goImgs[0])
	for i, l := range layouts {
		row := DDPRow{Model: name, Layout: fmt.Sprintf("%d process(es) × %d thread(s)", l.procs, l.threads), Processes: l.procs, Threads: l.threads,
			BatchPerProcess: dc.Batch * l.threads, GoImgPerS: median(goImgs[i]), PyImgPerS: median(pyImgs[i])}
		row.Speedup = ratio(row.GoImgPerS, row.PyImgPerS)
		if i > 0 {
			row.GoEfficiency = ratio(row.GoImgPerS, 2*base)
			row.PyEfficiency = ratio(row.PyImgPerS, 2*median(pyImgs[0]))
		}
		if l.procs > 1 {
			row.GoAllReduceMS, row.PyAllReduceMS = 1000*median(goAR[i]), 1000*median(pyAR[i])
		}
		r.res.DDP = append(r.res.DDP, row)
	}
	row := DDPRow{Model: name, Layout: "2 independent processes × 1 thread (no communication)", Processes: 2, Threads: 1,
		BatchPerProcess: dc.Batch, GoImgPerS: median(indep), Independent: true}
	row.GoEfficiency = ratio(row.GoImgPerS, 2*base)
	r.res.DDP = append(r.res.DDP, row)
	return nil
}

// independentPair runs two single-process Go runs at the same time and returns their summed
// img/s: the ceiling that memory bandwidth, caches and the other core's load leave to any
// two-process layout on this machine, with no collective at all.
func (r *runner) independentPair(dc ddpCase, rep int) (float64, error) {
	var rcs [2]RunConfig
	for k := range rcs {
		rc, err := r.ddpConfig(dc, 1, 1, fmt.Sprintf("ddp-%s-indep%d-rep%d", dc.Norm, k, rep))
		if err != nil {
			return 0, err
		}
		rc.Seed = uint64(1 + k)
		rcs[k] = rc
	}
	var res [2]*RunResult
	var errs [2]error
	var wg sync.WaitGroup
	for k := range rcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[k], errs[k] = r.l.run(r.ctx, sideGo, rcs[k])
		}()
	}
	wg.Wait()
	total := 0.0
	for k := range rcs {
		if errs[k] != nil {
			return 0, errs[k]
		}
		total += res[k].GlobalImgS
		if err := os.RemoveAll(rcs[k].Dir); err != nil {
			return 0, err
		}
	}
	r.count++
	fmt.Fprintf(r.o.Log, "%3d %-6s %-11s %-44s          load %s\n", r.count, sideGo, "ddp", "2 independent 1×1 runs at once, "+modelName(dc.Model, dc.Norm), loadAvg())
	return total, nil
}

// ddpTargets are the two: Go's data-parallel throughput against PyTorch DDP's, and the
// scaling from one to two processes at one thread each.
func ddpTargets(res *Results) []Target {
	var ts []Target
	ceiling := map[string]float64{}
	for _, row := range res.DDP {
		if row.Independent {
			ceiling[row.Model] = row.GoEfficiency
		}
	}
	for _, row := range res.DDP {
		if row.Processes < 2 || row.Independent {
			continue
		}
		ts = append(ts,
			Target{Name: "data-parallel throughput, " + row.Model + ", " + row.Layout, Want: "Go ≥ 1.10 × PyTorch DDP (gloo)",
				Got: fmt.Sprintf("%.2f× (%.1f against %.1f img/s)", row.Speedup, row.GoImgPerS, row.PyImgPerS), Met: row.Speedup >= 1.10},
			Target{Name: "data-parallel scaling efficiency, " + row.Model + ", 1 → 2 processes at 1 thread", Want: "≥ 0.9",
				Got: fmt.Sprintf("Go %.2f, Python %.2f; two independent processes %.2f", row.GoEfficiency, row.PyEfficiency, ceiling[row.Model]),
				Met: row.GoEfficiency >= 0.9})
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
		"PyTorch's DistributedDataParallel over gloo (bench/ddp_reference.py), with and without batch norm. img/s counts every " +
		"rank's images; efficiency is img/s over twice the 1 × 1 figure. The last row of each model is the ceiling: two " +
		"single-process runs at the same time with no communication at all, what the machine's two cores give two busy " +
		"processes. Go's all-reduce time is the gradient all-reduce per step, waiting for the other rank included; Python's " +
		"one all-reduce of the gradients after a barrier. hdge-torch does not overlap the all-reduce with backward as DDP's " +
		"reducer does.\n\n")
	b.WriteString("| model | layout | batch per process | Go img/s | Python img/s | speed-up | Go efficiency | Python efficiency | Go all-reduce ms/step | Python all-reduce ms |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res.DDP {
		num := func(x float64, f string) string {
			if x == 0 {
				return "—"
			}
			return fmt.Sprintf(f, x)
		}
		ar := func(x float64) string {
			if r.Processes < 2 || r.Independent {
				return "—"
			}
			return fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f | %s | %s | %s | %s | %s | %s |\n", r.Model, r.Layout, r.BatchPerProcess, r.GoImgPerS,
			num(r.PyImgPerS, "%.1f"), num(r.Speedup, "%.2f×"), num(r.GoEfficiency, "%.2f"), num(r.PyEfficiency, "%.2f"),
			ar(r.GoAllReduceMS), ar(r.PyAllReduceMS))
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
