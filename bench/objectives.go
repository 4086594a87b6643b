package bench

import (
	"cmp"
	_ "embed"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/sampler"
	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/trainer"
)

//go:embed jem_reference.py
var jemReferencePy []byte

//go:embed baselines_reference.py
var baselinesReferencePy []byte

// objectivesCase is the objectives section: one training step of every objective added after
// CE and HDGE, on one model without batch norm (jem and hdge-jem refuse it), against CE's step in
// the same Go process, and the three that have a Python reference against it.
type objectivesCase struct {
	Model       string
	Shape       []int
	Batch       int
	Classes     int
	QueueSize   int
	SGLDSteps   int // jem, hdge-jem
	BufferSize  int
	WarmupSteps int // Go rounds of every objective, not timed
	Steps       int // timed Go rounds per repetition
	Reps        int
	// Python objectives (jem_reference.py, baselines_reference.py) and their timed steps per
	// repetition; each starts with WarmupSteps untimed ones.
	Python  []string
	PySteps map[string]int
	// MemShapes are the replay buffers measured, MemChains chains each.
	MemShapes [][]int
	MemChains int
}

// goObjectives are the Go rows, CE first: every ratio is to it. The plain rows run hdge-torch's
// default, --channels-last auto, which resolves to channels-last when autoLast and to NCHW
// otherwise; OBJECTIVE/LAYOUT rows run jem and adv, whose input-gradient passes (SGLD, PGD) are
// where the two layouts differed most, in the other layout, so that both are always measured.
func goObjectives(autoLast bool) []string {
	other := "channels-last"
	if autoLast {
		other = "nchw"
	}
	return []string{"ce", "hdge", "jem", "hdge-jem", "supcon", "simclr", "jointloss", "adv", "jem/" + other, "adv/" + other}
}

// objectiveLayout splits a goObjectives entry into the objective and the --channels-last it runs
// with: auto for a plain name, true for OBJECTIVE/channels-last, false for OBJECTIVE/nchw.
func objectiveLayout(entry string) (objective string, layout model.Layout) {
	objective, l, _ := strings.Cut(entry, "/")
	switch l {
	case "nchw":
		return objective, model.LayoutNCHW
	case "channels-last":
		return objective, model.LayoutChannelsLast
	}
	return objective, model.LayoutAuto
}

// objectivesAutoLayout is what --channels-last auto gives the section's models (no batch norm) on
// rc's device; the children on this machine resolve it alike.
func objectivesAutoLayout(oc objectivesCase, rc RunConfig) (model.ChosenLayout, error) {
	return model.ResolveLayout(model.Settings{Model: oc.Model, Norm: "none", ChannelsLast: model.LayoutAuto, Device: cmp.Or(rc.Device, "cpu")})
}

// layoutName is a row's layout as the table shows it.
func layoutName(channelsLast bool) string {
	if channelsLast {
		return "channels-last"
	}
	return "NCHW"
}

func objectivesSuite(quick bool) objectivesCase {
	d := sampler.DefaultSettings()
	if quick {
		return objectivesCase{Model: "wrn-10-1", Shape: []int{1, 28, 28}, Batch: 8, Classes: 10, QueueSize: 64, SGLDSteps: 2,
			BufferSize: 32, WarmupSteps: 1, Steps: 2, Reps: 1, Python: []string{"jem", "supcon", "adv"},
			PySteps: map[string]int{"jem": 2, "supcon": 2, "adv": 2}, MemShapes: [][]int{{1, 28, 28}, {3, 32, 32}}, MemChains: 256}
	}
	return objectivesCase{Model: trainer.Defaults().Model, Shape: []int{1, 28, 28}, Batch: 64, Classes: 10, QueueSize: 65536,
		SGLDSteps: d.SGLD.Steps, BufferSize: d.BufferSize, WarmupSteps: 1, Steps: 3, Reps: 2, Python: []string{"jem", "supcon", "adv"},
		PySteps: map[string]int{"jem": 3, "supcon": 10, "adv": 6}, MemShapes: [][]int{{1, 28, 28}, {3, 32, 32}}, MemChains: d.BufferSize}
}

// ObjectivesResult is the objectives section.
type ObjectivesResult struct {
	Model      string            `json:"model"`
	Shape      []int             `json:"shape"`
	Batch      int               `json:"batch"`
	Classes    int               `json:"classes"`
	K          int               `json:"k"`
	SGLDSteps  int               `json:"sgld_steps"`
	BufferSize int               `json:"buffer_size"`
	Rounds     int               `json:"rounds"`      // timed Go rounds, every repetition together
	AutoLayout string            `json:"auto_layout"` // what --channels-last auto resolved to, and why
	Steps      []ObjectiveRow    `json:"steps"`
	Memory     []BufferMemoryRow `json:"buffer_memory"`
}

// ObjectiveRow is one objective's training step.
type ObjectiveRow struct {
	Objective string `json:"objective"`
	// Layout is the Go side's: channels-last or NCHW; Python runs NCHW. Auto marks the rows that
	// ran hdge-torch's default, --channels-last auto, Layout being what it resolved to.
	Layout string  `json:"layout"`
	Auto   bool    `json:"auto,omitempty"`
	GoMS   float64 `json:"go_ms"`
	// OverCE is the median over rounds of this step's time over the CE step's of the same round.
	OverCE   float64    `json:"go_over_ce"`
	OverCECI [2]float64 `json:"go_over_ce_ci95"`
	// OverHDGE is the same against the HDGE step, for the SGLD objectives in the default layout.
	OverHDGE float64 `json:"go_over_hdge,omitempty"`
	PyMS     float64 `json:"python_ms,omitempty"`
	PySteps  int     `json:"python_steps,omitempty"`
	// GoAloneMS is the same step in a Go process that trains only this objective, as the Python
	// reference's process does and as `hdge-torch train` runs; AloneSteps its timed steps.
	GoAloneMS  float64 `json:"go_alone_ms,omitempty"`
	AloneSteps int     `json:"go_alone_steps,omitempty"`
	// Speedup is Python ms over Go ms, one process per objective on both sides (GoAloneMS);
	// SharedSpeedup is Python ms over GoMS, the Go step in the process shared by every objective.
	Speedup       float64 `json:"speedup,omitempty"`
	SharedSpeedup float64 `json:"speedup_shared_process,omitempty"`
}

// BufferMemoryRow is the replay buffer's memory for one sample shape.
type BufferMemoryRow struct {
	Chains      int   `json:"chains"`
	Shape       []int `json:"shape"`
	BufferBytes int64 `json:"buffer_bytes"` // the replay_buffer tensor of the objective's state
	// GoRSSMiB and PyRSSMiB are what creating the buffer added to the resident set (VmRSS).
	GoRSSMiB float64 `json:"go_rss_added_mib"`
	PyRSSMiB float64 `json:"python_rss_added_mib"`
	// GoCheckpointBytes is hdge-torch's checkpoint (model, Adam's moments, the objective's state);
	// PyCheckpointBytes JEM's own (model_state_dict and replay_buffer).
	GoCheckpointBytes int64   `json:"go_checkpoint_bytes"`
	GoSharePct        float64 `json:"go_buffer_share_pct"`
	PyCheckpointBytes int64   `json:"python_checkpoint_bytes"`
	PySharePct        float64 `json:"python_buffer_share_pct"`
}

func (r *runner) objectivesConfig(oc objectivesCase, mode string) RunConfig {
	rc := r.base(mode)
	rc.Model, rc.Norm, rc.Shape, rc.Batch, rc.Classes, rc.QueueSize = oc.Model, "none", oc.Shape, oc.Batch, oc.Classes, oc.QueueSize
	rc.SGLDSteps, rc.BufferSize, rc.WarmupSteps, rc.Steps = oc.SGLDSteps, oc.BufferSize, oc.WarmupSteps, oc.Steps
	return rc
}

// objectives runs the section: the Go process alternating every objective's step, and the Python
// references, one process each, Go first on even repetitions and last on odd ones.
func (r *runner) objectives() error {
	oc := objectivesSuite(r.su.Quick)
	if r.o.Reps > 0 {
		oc.Reps = r.o.Reps
	}
	goRC := r.objectivesConfig(oc, "objectives")
	auto, err := objectivesAutoLayout(oc, goRC)
	if err != nil {
		return err
	}
	entries := goObjectives(auto.ChannelsLast)
	goRC.Objectives = entries
	goS, pyS := map[string][]float64{}, map[string][]float64{}
	runGo := func() error {
		g, err := r.run(sideGo, goRC)
		if err != nil {
			return err
		}
		for _, name := range entries {
			if len(g.ObjectiveS[name]) != oc.Steps {
				return fmt.Errorf("go %s: %d timed steps, want %d", name, len(g.ObjectiveS[name]), oc.Steps)
			}
			goS[name] = append(goS[name], g.ObjectiveS[name]...)
		}
		return nil
	}
	// Each Python reference against a Go process that trains only the same objective (the
	// like-for-like comparison: one objective per process on both sides), the two alternating.
	aloneS := map[string][]float64{}
	runPairs := func(rep int) error {
		for _, name := range oc.Python {
			pyRC := r.objectivesConfig(oc, "objectives")
			pyRC.Objective, pyRC.Steps = name, oc.PySteps[name]
			aloneRC := r.objectivesConfig(oc, "objectives")
			aloneRC.Objectives, aloneRC.Steps = []string{name}, oc.PySteps[name]
			py := func() error {
				p, err := r.run(sidePy, pyRC)
				if err != nil {
					return err
				}
				if len(p.StepS) != pyRC.Steps {
					return fmt.Errorf("python %s: %d timed steps, want %d", name, len(p.StepS), pyRC.Steps)
				}
				pyS[name] = append(pyS[name], p.StepS...)
				return nil
			}
			alone := func() error {
				g, err := r.run(sideGo, aloneRC)
				if err != nil {
					return err
				}
				if len(g.ObjectiveS[name]) != aloneRC.Steps {
					return fmt.Errorf("go %s alone: %d timed steps, want %d", name, len(g.ObjectiveS[name]), aloneRC.Steps)
				}
				aloneS[name] = append(aloneS[name], g.ObjectiveS[name]...)
				return nil
			}
			first, second := alone, py
			if rep%2 == 1 {
				first, second = py, alone
			}
			if err := first(); err != nil {
				return err
			}
			if err := second(); err != nil {
				return err
			}
		}
		return nil
	}
	for rep := range oc.Reps {
		if rep%2 == 0 {
			if err := runGo(); err != nil {
				return err
			}
		}
		if err := runPairs(rep); err != nil {
			return err
		}
		if rep%2 == 1 {
			if err := runGo(); err != nil {
				return err
			}
		}
	}
	res := &ObjectivesResult{Model: oc.Model, Shape: oc.Shape, Batch: oc.Batch, Classes: oc.Classes, K: oc.QueueSize,
		SGLDSteps: oc.SGLDSteps, BufferSize: oc.BufferSize, Rounds: len(goS["ce"]), AutoLayout: auto.String()}
	for _, entry := range entries {
		name, layout := objectiveLayout(entry)
		row := ObjectiveRow{Objective: name, Layout: layoutName(layout == model.LayoutChannelsLast), GoMS: 1000 * median(goS[entry]),
			OverCE: pairedRatio(goS[entry], goS["ce"]), OverCECI: pairedRatioCI(goS[entry], goS["ce"])}
		if layout == model.LayoutAuto {
			row.Layout, row.Auto = layoutName(auto.ChannelsLast), true
			if name == "jem" || name == "hdge-jem" {
				row.OverHDGE = pairedRatio(goS[entry], goS["hdge"])
			}
		}
		if ps := pyS[name]; len(ps) > 0 {
			row.PyMS, row.PySteps = 1000*median(ps), len(ps)
			row.SharedSpeedup = ratio(row.PyMS, row.GoMS)
			if as := aloneS[name]; row.Auto && len(as) > 0 {
				row.GoAloneMS, row.AloneSteps = 1000*median(as), len(as)
				row.Speedup = ratio(row.PyMS, row.GoAloneMS)
			}
		}
		res.Steps = append(res.Steps, row)
	}
	for i, shape := range oc.MemShapes {
		rc := r.objectivesConfig(oc, "buffer-memory")
		// The checkpoint's sizes do not depend on how long SGLD runs: one step keeps this short.
		rc.Shape, rc.BufferSize, rc.SGLDSteps = shape, oc.MemChains, 1
		rc.Dir = filepath.Join(r.work, "runs", "buffer-memory-"+shapeString(shape))
		if err := os.RemoveAll(rc.Dir); err != nil {
			return err
		}
		if err := os.MkdirAll(rc.Dir, 0o755); err != nil {
			return err
		}
		rc.Checkpoint = filepath.Join(rc.Dir, "checkpoint.pt")
		g, p, err := r.pair(i, rc, rc)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(rc.Dir); err != nil {
			return err
		}
		if g.BufferBytes != p.BufferBytes {
			return fmt.Errorf("buffer of %d × %s: %d bytes in Go, %d in Python", oc.MemChains, shapeString(shape), g.BufferBytes, p.BufferBytes)
		}
		row := BufferMemoryRow{Chains: oc.MemChains, Shape: shape, BufferBytes: g.BufferBytes,
			GoRSSMiB: mib(g.RSS1KiB - g.RSS0KiB), PyRSSMiB: mib(p.RSS1KiB - p.RSS0KiB),
			GoCheckpointBytes: g.CheckpointBytes, PyCheckpointBytes: p.CheckpointBytes}
		row.GoSharePct = 100 * ratio(float64(row.BufferBytes), float64(row.GoCheckpointBytes))
		row.PySharePct = 100 * ratio(float64(row.BufferBytes), float64(row.PyCheckpointBytes))
		res.Memory = append(res.Memory, row)
	}
	r.res.Objectives = res
	return nil
}

// pyObjectiveCommand is the Python side of an objectives run: jem_reference.py for jem and for
// the buffer's memory, baselines_reference.py for supcon and adv, all in NCHW (the reference's
// layout throughout this benchmark) without normalisation, as the Go side.
func pyObjectiveCommand(dir string, rc RunConfig) ([]string, error) {
	common := []string{"--threads", strconv.Itoa(rc.Threads), "--model", rc.Model, "--batch", strconv.Itoa(rc.Batch),
		"--warmup", strconv.Itoa(rc.WarmupSteps), "--steps", strconv.Itoa(rc.Steps)}
	jem := filepath.Join(dir, "jem_reference.py")
	if rc.Mode == "buffer-memory" {
		return []string{jem, "--memory", "--threads", strconv.Itoa(rc.Threads), "--model", rc.Model, "--shape",
			strings.ReplaceAll(shapeString(rc.Shape), "×", ","), "--buffer-size", strconv.Itoa(rc.BufferSize),
			"--checkpoint", rc.Checkpoint}, nil
	}
	switch rc.Objective {
	case "jem":
		return append([]string{jem, "--sgld-steps", strconv.Itoa(rc.SGLDSteps), "--buffer-size", strconv.Itoa(rc.BufferSize)}, common...), nil
	case "supcon", "adv":
		return append([]string{filepath.Join(dir, "baselines_reference.py"), "--objective", rc.Objective, "--norm", "none", "--nchw"},
			common...), nil
	}
	return nil, fmt.Errorf("objective %q has no Python reference", rc.Objective)
}

// objectiveStepper is one objective's training step on a model of its own.
type objectiveStepper struct {
	name string
	st   *stepper
	obj  trainer.Objective
	gen  *torch.Generator
}

func (o *objectiveStepper) close() {
	if o.obj != nil {
		o.obj.Close()
	}
	if o.gen != nil {
		o.gen.Close()
	}
	o.st.close()
}

// newObjectiveStepper builds the model, the objective, an optimiser over both's parameters (the
// contrastive objectives' projection heads) and a batch with the views the objective needs,
// from the settings a run of that objective would validate.
func newObjectiveStepper(rc RunConfig, entry string) (*objectiveStepper, error) {
	name, layout := objectiveLayout(entry)
	rc.Objective, rc.ChannelsLast = name, layout
	cfg := trainerConfig(rc)
	cfg.Dataset = "idx:unused" // validated below, never read
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	st, err := newStepper(rc)
	if err != nil {
		return nil, err
	}
	o := &objectiveStepper{name: entry, st: st}
	if o.gen, err = torch.NewGenerator(rc.Seed+1, torch.CPU); err != nil {
		o.close()
		return nil, err
	}
	o.obj, err = trainer.NewObjective(trainer.Env{Config: cfg, Classes: rc.Classes, Shape: st.shape, Model: st.model, Gen: o.gen,
		Dev: st.model.Dev})
	if err != nil {
		o.close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if ps := o.obj.Parameters(); len(ps) > 0 {
		st.opt.Close()
		st.params = append(st.params, ps...)
		st.opt = trainer.NewOptimizer(cfg, st.params)
	}
	if v := trainer.ObjectiveViews(cfg); v > 1 {
		r := rand.New(rand.NewPCG(rc.Seed, 8))
		st.batch.Views = [][]float32{st.batch.X}
		for range v - 1 {
			x := make([]float32, len(st.batch.X))
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			st.batch.Views = append(st.batch.Views, x)
		}
	}
	return o, nil
}

func (o *objectiveStepper) step() error { return o.st.step(o.obj, o.gen) }

// goObjectiveSteps runs the training step of every objective in rc.Objectives in rounds, the order
// rotated every round so that machine load hits all alike; the first WarmupSteps rounds are not
// timed.
func goObjectiveSteps(rc RunConfig) (*RunResult, error) {
	if len(rc.Objectives) == 0 {
		return nil, fmt.Errorf("no objectives")
	}
	var steppers []*objectiveStepper
	defer func() {
		for _, o := range steppers {
			o.close()
		}
	}()
	for _, name := range rc.Objectives {
		o, err := newObjectiveStepper(rc, name)
		if err != nil {
			return nil, err
		}
		steppers = append(steppers, o)
	}
	res := &RunResult{Batch: rc.Batch, ObjectiveS: map[string][]float64{}}
	for i := range rc.WarmupSteps + rc.Steps {
		for j := range steppers {
			o := steppers[(i+j)%len(steppers)]
			t0 := time.Now()
			if err := o.step(); err != nil {
				return nil, fmt.Errorf("%s step %d: %w", o.name, i, err)
			}
			if i >= rc.WarmupSteps {
				res.ObjectiveS[o.name] = append(res.ObjectiveS[o.name], time.Since(t0).Seconds())
			}
		}
	}
	return res, nil
}

// goBufferMemory measures JEM's replay buffer: what creating the objective (the buffer, U(-1, 1))
// adds to the resident set, the buffer tensor's bytes in the objective's state, and the size of
// the checkpoint the training loop writes (model, Adam's moments after one step, the objective's
// state).
func goBufferMemory(rc RunConfig) (*RunResult, error) {
	rc.Objective = "jem"
	cfg := trainerConfig(rc)
	st, err := newStepper(rc)
	if err != nil {
		return nil, err
	}
	defer st.close()
	gen, err := torch.NewGenerator(rc.Seed+1, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	res := &RunResult{RSS0KiB: selfKiB("VmRSS")}
	obj, err := trainer.NewObjective(trainer.Env{Config: cfg, Classes: rc.Classes, Shape: st.shape, Model: st.model, Gen: gen, Dev: st.model.Dev})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	res.RSS1KiB = selfKiB("VmRSS")
	if err := st.step(obj, gen); err != nil {
		return nil, fmt.Errorf("jem step: %w", err)
	}
	s := torch.NewScope()
	defer s.Close()
	state := obj.State(s)
	buf := state[sampler.TensorSamples]
	if buf == nil {
		return nil, fmt.Errorf("the jem objective's state has no %s", sampler.TensorSamples)
	}
	if buf.DType() != torch.Float32 {
		return nil, fmt.Errorf("%s is %s, want float32", sampler.TensorSamples, buf.DType())
	}
	res.BufferBytes = 4 * buf.Numel()
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	rng, err := gen.State()
	if err != nil {
		return nil, err
	}
	ck := &model.Checkpoint{Model: map[string]*torch.Tensor{}, OptName: cfg.Optimizer, OptStep: st.opt.StepCount(), OptLR: st.opt.LR(),
		OptState: st.opt.State(), Objective: state, RNG: map[string][]byte{"objective": rng}, Step: 1, Config: conf}
	for _, p := range st.model.StateDict() {
		ck.Model[p.Name] = p.T
		ck.ModelKeys = append(ck.ModelKeys, p.Name)
	}
	if err := ck.Save(rc.Checkpoint); err != nil {
		return nil, err
	}
	fi, err := os.Stat(rc.Checkpoint)
	if err != nil {
		return nil, err
	}
	res.CheckpointBytes = fi.Size()
	return res, nil
}

// objectivesTargets are the issues' Go ≥ 1.10 × Python for the steps with a Python reference.
func objectivesTargets(res *Results) []Target {
	if res.Objectives == nil {
		return nil
	}
	var ts []Target
	for _, row := range res.Objectives.Steps {
		if row.PySteps == 0 || !row.Auto {
			continue
		}
		name := "training step speed, " + row.Objective
		if row.Objective == "jem" {
			name += fmt.Sprintf(" (%d SGLD steps)", res.Objectives.SGLDSteps)
		}
		got := fmt.Sprintf("%.2f× (%.0f against %.0f ms, one objective per process); in the process shared by every objective %.2f×",
			row.Speedup, row.GoAloneMS, row.PyMS, row.SharedSpeedup)
		for _, v := range res.Objectives.Steps {
			if v.Objective == row.Objective && !v.Auto {
				got += fmt.Sprintf(", Go in %s %.2f×", v.Layout, v.SharedSpeedup)
			}
		}
		// The target is hdge-torch as a user runs it: its default layout, one objective in the
		// process, as `hdge-torch train` and the reference's script.
		ts = append(ts, Target{Name: name, Want: "Go ≥ 1.10 × Python", Got: got, Met: row.Speedup >= 1.10})
	}
	return ts
}

func objectivesMarkdown(res *Results) string {
	o := res.Objectives
	if o == nil {
		return ""
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("\n## The objectives' training steps\n\nOne training step (`trainer.TrainStep`) of every objective, each on a model of its own "+
		"(%s **without batch norm** for every row, since jem and hdge-jem refuse it; the same initialisation, Adam) and a fixed "+
		"random batch of %d images of %s (two views for supcon, simclr and jointloss), in one Go process; the steps of all "+
		"objectives alternate round by round, the order rotated every round, so that machine load hits all alike; warm-up "+
		"rounds excluded. hdge: K=%d; jem and hdge-jem: JEM's sampler, %d SGLD steps (JEM's default: 20) of size 1 with noise "+
		"0.01 from a replay buffer of %d chains (JEM's: 10000; 5 %% restarts), the model in eval mode while sampling; adv: PGD L∞ ε 8/255, step 2/255, "+
		"7 steps, random start. Go / CE (and / HDGE) is the median over the %d rounds of the two steps' ratio within a round, "+
		"with a distribution-free 95 %% interval. Python: bench/jem_reference.py (JEM's sample_q and loss) and "+
		"bench/baselines_reference.py (SupContrast's step; Madry's PGD training step) on the same libtorch, model, batch and "+
		"threads, NCHW, one process per objective; each alternates with a Go process that trains only the same objective (Go "+
		"alone), and speed-up is Python ms over Go alone ms, the like-for-like figure the targets take; the shared column is "+
		"Python ms over the Go step in the process shared by every objective, where the steps of other objectives run in between. Go "+
		"runs hdge-torch's default, --channels-last auto, in the rows marked (auto), which resolved here to %s; the last two rows run jem and adv "+
		"in the other layout, asked for explicitly (their ratio to CE is to the default CE step); the targets take the default.\n\n",
		o.Model, o.Batch, shapeString(o.Shape), o.K, o.SGLDSteps, o.BufferSize, o.Rounds, cmp.Or(o.AutoLayout, "channels-last"))
	p("| objective | Go layout | Go ms/step | Go / CE (95 %% CI) | Go / HDGE | Go alone ms/step | Python ms/step | speed-up | speed-up, shared process |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range o.Steps {
		hd, alone, py, sp, shared := "–", "–", "–", "–", "–"
		if r.OverHDGE > 0 {
			hd = fmt.Sprintf("%.2f", r.OverHDGE)
		}
		if r.PySteps > 0 {
			py, shared = fmt.Sprintf("%.0f", r.PyMS), fmt.Sprintf("%.2f×", r.SharedSpeedup)
		}
		if r.AloneSteps > 0 {
			alone, sp = fmt.Sprintf("%.0f", r.GoAloneMS), fmt.Sprintf("%.2f×", r.Speedup)
		}
		layout := r.Layout
		if r.Auto {
			layout += " (auto)"
		}
		p("| %s | %s | %.0f | %.2f (%.2f–%.2f) | %s | %s | %s | %s | %s |\n", r.Objective, layout, r.GoMS, r.OverCE, r.OverCECI[0],
			r.OverCECI[1], hd, alone, py, sp, shared)
	}
	if len(o.Memory) > 0 {
		p("\n### The replay buffer's memory\n\nBuffer: the float32 `replay_buffer` tensor of the jem objective's state. Resident set " +
			"added: VmRSS just after creating the objective (Go) or `torch.rand(...) * 2 - 1` as JEM does (Python), minus just " +
			"before. Checkpoint: Go writes the training loop's checkpoint (model, Adam's moments after one jem step, the " +
			"objective's state); Python JEM's own `torch.save({model_state_dict, replay_buffer})`; share is the buffer's bytes " +
			"over the file's.\n\n")
		p("| chains | sample | buffer MiB | Go RSS added MiB | Python RSS added MiB | Go checkpoint MiB | buffer share | Python checkpoint MiB | buffer share |\n")
		p("|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range o.Memory {
			p("| %d | %s | %.1f | %.1f | %.1f | %.1f | %.1f %% | %.1f | %.1f %% |\n", r.Chains, shapeString(r.Shape),
				float64(r.BufferBytes)/(1<<20), r.GoRSSMiB, r.PyRSSMiB, float64(r.GoCheckpointBytes)/(1<<20), r.GoSharePct,
				float64(r.PyCheckpointBytes)/(1<<20), r.PySharePct)
		}
	}
	return b.String()
}
