package experiment

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/trainer"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// hookCore calls hook with every entry and all its fields (those added by With included) before
// passing it on, so a test can act at an exact point of a run, synchronously.
type hookCore struct {
	zapcore.Core
	fields []zapcore.Field
	hook   func(zapcore.Entry, map[string]any)
}

func (c *hookCore) With(f []zapcore.Field) zapcore.Core {
	return &hookCore{Core: c.Core.With(f), fields: append(slices.Clone(c.fields), f...), hook: c.hook}
}

func (c *hookCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *hookCore) Write(e zapcore.Entry, f []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, x := range append(slices.Clone(c.fields), f...) {
		x.AddTo(enc)
	}
	c.hook(e, enc.Fields)
	return c.Core.Write(e, f)
}

// count counts log entries with the message, optionally only those of one run and seed.
func count(logs *observer.ObservedLogs, msg, run string, seed uint64) int {
	n := 0
	for _, e := range logs.FilterMessage(msg).All() {
		m := e.ContextMap()
		if run == "" || (m["run"] == run && m["seed"] == seed) {
			n++
		}
	}
	return n
}

func mtime(t *testing.T, path string) time.Time {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.ModTime()
}

// smokeSpec is experiments/smoke.json on a 200-image Fashion-MNIST subset, writing to a
// temporary folder.
func smokeSpec(t *testing.T) *Spec {
	s, err := Load(filepath.Join(testutil.RepoRoot(), "experiments", "smoke.json"))
	if err != nil {
		t.Fatal(err)
	}
	s.Base["dataset"] = testutil.SmallFashion(t, t.TempDir(), 200, 200)
	s.Out = filepath.Join(t.TempDir(), "out")
	return s
}

// smokeSpecEdited is experiments/smoke.json with edit applied to its JSON before parsing, so the
// spec's checks see the change, on a 200-image Fashion-MNIST subset with 100 test images, writing
// to a temporary folder.
func smokeSpecEdited(t *testing.T, edit func(raw map[string]any)) *Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "experiments", "smoke.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	edit(raw)
	if b, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	s, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	s.Path = "smoke.json"
	s.Base["dataset"] = testutil.SmallFashion(t, t.TempDir(), 200, 100)
	s.Out = filepath.Join(t.TempDir(), "out")
	return s
}

// TestSmoke runs the smoke spec over two sittings, the first interrupted inside a training run,
// then a third that must find nothing to do; it checks the skip and resume behaviour and that
// the tables hold the mean and standard deviation of what the evaluations wrote.
func TestSmoke(t *testing.T) {
	s := smokeSpec(t)

	// Sitting 1: stopped at step 2 of hdge seed 1, after ce seed 1 is done.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obsCore, logs := observer.New(zap.InfoLevel)
	var once sync.Once
	log := zap.New(&hookCore{Core: obsCore, hook: func(e zapcore.Entry, f map[string]any) {
		if e.Message == "train" && f["run"] == "hdge" && f["seed"] == uint64(1) && f["step"] == int64(2) {
			once.Do(cancel)
		}
	}})
	res, err := Run(ctx, s, Options{Log: log})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("sitting 1: err = %v, want ErrInterrupted", err)
	}
	if res == nil || res.Done != 1 || res.Total != 4 {
		t.Fatalf("sitting 1: results %+v, want 1 of 4 done", res)
	}
	ce1, hd1 := s.RunDir("ce", 1), s.RunDir("hdge", 1)
	if exists(filepath.Join(hd1, summaryFile)) {
		t.Fatal("the interrupted run wrote summary.json")
	}
	if !exists(filepath.Join(hd1, "checkpoints", "step-00000002.pt")) {
		t.Fatal("the interrupted run left no checkpoint at step 2")
	}
	st, err := readState(hd1)
	if err != nil || st == nil || len(st.Segments) != 1 || st.Segments[0].Outcome != "interrupted" || st.Segments[0].ToStep != 2 {
		t.Fatalf("state after the interruption: %+v, %v", st, err)
	}
	kept := map[string]time.Time{}
	for _, f := range []string{summaryFile, "eval/metrics.json", "checkpoints/best.pt", StateFile} {
		kept[f] = mtime(t, filepath.Join(ce1, f))
	}

	// Sitting 2, two units at a time: ce seed 1 is skipped, hdge seed 1 resumes from step 2, the
	// rest is done.
	obsCore, logs = observer.New(zap.InfoLevel)
	res, err = Run(context.Background(), s, Options{Log: zap.New(obsCore), Jobs: 2})
	if err != nil {
		t.Fatalf("sitting 2: %v", err)
	}
	if res.Done != 4 {
		t.Fatalf("sitting 2: %d of %d done", res.Done, res.Total)
	}
	if count(logs, "training already complete: skipped", "ce", 1) != 1 || count(logs, "evaluation already done: skipped", "ce", 1) != 1 {
		t.Error("sitting 2 did not log skipping ce seed 1")
	}
	for f, before := range kept {
		if after := mtime(t, filepath.Join(ce1, f)); !after.Equal(before) {
			t.Errorf("ce seed 1 %s was rewritten (%v, then %v)", f, before, after)
		}
	}
	resumed := logs.FilterMessage("resuming").All()
	if len(resumed) != 1 || resumed[0].ContextMap()["run"] != "hdge" || resumed[0].ContextMap()["step"] != int64(2) {
		t.Errorf("resume log entries: %+v, want one for hdge seed 1 at step 2", resumed)
	}
	st, _ = readState(hd1)
	if len(st.Segments) != 2 || st.Segments[1].FromStep != 2 || st.Segments[1].ToStep != 6 || st.Segments[1].Outcome != "complete" {
		t.Errorf("hdge seed 1 segments after resuming: %+v", st.Segments)
	}
	// The resumed run continues its log: training records at steps 2, 4, 6 and no restart.
	if steps := trainSteps(t, filepath.Join(hd1, "metrics.jsonl")); !slices.Equal(steps, []int{2, 4, 6}) {
		t.Errorf("hdge seed 1 logged training steps %v, want [2 4 6]", steps)
	}

	checkResults(t, s)

	// Sitting 3: nothing left to do.
	obsCore, logs = observer.New(zap.InfoLevel)
	if _, err := Run(context.Background(), s, Options{Log: zap.New(obsCore)}); err != nil {
		t.Fatalf("sitting 3: %v", err)
	}
	if a, b, c := count(logs, "training already complete: skipped", "", 0), count(logs, "evaluation already done: skipped", "", 0),
		count(logs, "training", "", 0); a != 4 || b != 4 || c != 0 {
		t.Errorf("sitting 3: %d trainings and %d evaluations skipped, %d trainings started; want 4, 4, 0", a, b, c)
	}

	// A spec whose settings no longer match the run folders is refused, naming the setting.
	s.Base["lr"] = json.Number("0.002")
	_, err = Run(context.Background(), s, Options{})
	var se *SpecError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "--lr 0.001 there, 0.002 in the spec") {
		t.Errorf("changed lr: err = %v, want a SpecError naming --lr", err)
	}
	delete(s.Base, "lr")

	// Other eval settings make every evaluation out of date: none is in the tables until redone.
	s.Eval["ood-limit"] = json.Number("50")
	res, err = Aggregate(s)
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != 0 || !strings.Contains(strings.Join(res.Runs[0].Notes, "\n"), "other eval settings") {
		t.Errorf("after changing the eval settings: %d done, notes %q", res.Done, res.Runs[0].Notes)
	}
}

func trainSteps(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if _, ok := rec["loss"]; ok {
			steps = append(steps, int(rec["step"].(float64)))
		}
	}
	return steps
}

// checkResults recomputes a few statistics from the evaluations' own files and finds them in
// results.json and results.md.
func checkResults(t *testing.T, s *Spec) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Out, ResultsJSON))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(s.Out, ResultsMarkdown))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.OODSets, []string{"interp", "uniform", "gaussian"}) || !slices.Equal(res.Scores, []string{"logqx", "maxprob"}) {
		t.Errorf("columns: sets %v, scores %v", res.OODSets, res.Scores)
	}
	var pgd []string
	for _, c := range res.PGD {
		pgd = append(pgd, c.Key)
	}
	if want := []string{"pgd.linf.eps=0.steps=2", "pgd.linf.eps=2/255.steps=2", "pgd.l2.eps=0.25.steps=2"}; !slices.Equal(pgd, want) {
		t.Errorf("PGD columns %v, want %v", pgd, want)
	}
	type check struct {
		key    string
		get    func(m map[string]any) float64
		scale  float64
		digits int
	}
	num := func(m map[string]any, path ...string) float64 {
		var v any = m
		for _, p := range path {
			v = v.(map[string]any)[p]
		}
		return v.(float64)
	}
	checks := []check{
		{KeyAccuracy, func(m map[string]any) float64 { return num(m, "classification", "accuracy") }, 100, 2},
		{KeyECE, func(m map[string]any) float64 { return num(m, "calibration", "ece") }, 100, 2},
		{OODKey("interp", "logqx", "auroc"), func(m map[string]any) float64 { return num(m, "ood", "interp", "logqx", "auroc") }, 1, 3},
		{OODKey("uniform", "maxprob", "auroc"), func(m map[string]any) float64 { return num(m, "ood", "uniform", "maxprob", "auroc") }, 1, 3},
		{PGDKey("l2", 0.25, 2), func(m map[string]any) float64 {
			for _, r := range m["robustness"].([]any) {
				row := r.(map[string]any)
				if row["norm"] == "l2" && row["eps"] == 0.25 {
					return row["accuracy"].(float64)
				}
			}
			t.Fatal("no l2 0.25 row")
			return 0
		}, 100, 1},
	}
	means := map[string]map[string]float64{}
	for _, run := range []string{"ce", "hdge"} {
		var rr *RunResult
		for i := range res.Runs {
			if res.Runs[i].Name == run {
				rr = &res.Runs[i]
			}
		}
		if rr == nil {
			t.Fatalf("results.json has no run %s", run)
		}
		means[run] = map[string]float64{}
		for _, c := range checks {
			var vals []float64
			for _, seed := range s.Seeds {
				b, err := os.ReadFile(filepath.Join(s.RunDir(run, seed), "eval", "metrics.json"))
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatal(err)
				}
				vals = append(vals, c.get(m))
			}
			mean := (vals[0] + vals[1]) / 2
			sd := math.Abs(vals[0]-vals[1]) / math.Sqrt2 // sample std of two values
			means[run][c.key] = mean
			st := rr.Metrics[c.key]
			if st == nil || st.N != 2 || st.Std == nil || math.Abs(st.Mean-mean) > 1e-12 || math.Abs(*st.Std-sd) > 1e-12 {
				t.Errorf("%s %s: results.json has %+v, the metrics files give mean %v std %v", run, c.key, st, mean, sd)
				continue
			}
			cellText := fmt.Sprintf("%.*f ± %.*f", c.digits, mean*c.scale, c.digits, sd*c.scale)
			if !strings.Contains(string(md), cellText) {
				t.Errorf("results.md lacks %s %s = %q", run, c.key, cellText)
			}
		}
		if st := rr.Metrics[KeyTrainSeconds]; st == nil || st.N != 2 || !(st.Mean > 0) {
			t.Errorf("%s: train time %+v", run, st)
		}
	}
	d := res.Deltas["hdge"][KeyAccuracy]
	if d == nil || math.Abs(d.Diff-(means["hdge"][KeyAccuracy]-means["ce"][KeyAccuracy])) > 1e-12 || d.SE == nil {
		t.Errorf("accuracy difference hdge − ce: %+v", d)
	}
	for _, want := range []string{"hdge-torch experiment run ", "hdge-torch train --dataset idx:", "--objective hdge",
		"| ce | 2 |", "### OOD detection: AUROC of max p(y|x)", "| AUROC max p(y\\|x), uniform |", "Hardware: ", "### Differences from ce"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	good := `{"name": "x", "out": "o", "seeds": [1], "base": {"steps": 3}, "runs": [{"name": "ce", "set": {"objective": "ce"}}]}`
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	dir := t.TempDir()
	for _, c := range []struct{ spec, want string }{
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "ce"}], "seed": 1}`, `unknown key "seed"`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "ce"}], "base": {"epoch": 2}}`, `base: unknown option "epoch"`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "ce"}], "base": {"epochs": "2"}}`, `base: epochs: want a number`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "ce", "set": {"queue_size": 64}}]}`, `runs[0] (ce): set: unknown option "queue_size"`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "ce", "sets": {}}]}`, `runs[0]: unknown key "sets"`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "ce", "set": {"seed": 3}}]}`, `"seed" is set by the runner`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "ce", "set": {"contrast": "eq14"}}]}`, `runs[0] (ce): the run's settings are not valid`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "CE"}]}`, `runs[0] (CE): the name is a folder name`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "a"}, {"name": "a"}]}`, `two runs are named "a"`},
		{`{"name": "x", "out": "o", "seeds": [1, 1], "runs": [{"name": "a"}]}`, `"seeds": 1 appears twice`},
		{`{"name": "x", "out": "o", "seeds": [], "runs": [{"name": "a"}]}`, `"seeds" is empty`},
		{`{"name": "x", "seeds": [1], "runs": [{"name": "a"}]}`, `"out" is required`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "a"}], "baseline": "ce"}`, `"baseline": no run is named "ce"`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "a"}], "eval": {"pgd-eps": "1/255"}}`, `eval: unknown key "pgd-eps"`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "a"}], "eval": {"pgd-linf-eps": "x"}}`, `eval: "pgd-linf-eps": "x" is not a budget`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "a"}], "eval": {"ood": "test"}}`, `eval: "ood"`},
		{`{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "a"}], "eval": {"checkpoint": "final"}}`, `eval: "checkpoint": unknown value "final"`},
		{"{\"name\": \"x\",\n \"out\": \"o\",,\n}", `invalid JSON at line 2`},
		{`{"name": "x", "out": "o", "seeds": [1, 2], "runs": [{"name": "a", "seeds": [3]}]}`, `runs[0] (a): "seeds": 3 is not among the spec's seeds [1 2]`},
		{`{"name": "x", "out": "o", "seeds": [1, 2], "runs": [{"name": "a", "seeds": []}]}`, `runs[0] (a): "seeds" is empty`},
		{`{"name": "x", "out": "o", "seeds": [1, 2], "runs": [{"name": "a", "seeds": "1"}]}`, `runs[0] (a): "seeds": want a list`},
		{`{"name": "x", "out": "o", "seeds": [1, 2], "runs": [{"name": "a", "seeds": [1]}, {"name": "b", "set": {"init": "{run:a}"}}]}`, `runs[1] (b): seed 2 starts from {run:a}, which is not trained with that seed`},
	} {
		path := filepath.Join(dir, "spec.json")
		if err := os.WriteFile(path, []byte(c.spec), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("spec %s\n  err = %v\n  want %q, prefixed with the file", c.spec, err, c.want)
		}
	}
	s, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Units([]string{"hdge"}, nil); err == nil || !strings.Contains(err.Error(), `--only: no run is named "hdge"`) {
		t.Errorf("--only hdge: %v", err)
	}
	if _, err := s.Units(nil, []uint64{2}); err == nil || !strings.Contains(err.Error(), "--seeds: 2 is not among the spec's seeds") {
		t.Errorf("--seeds 2: %v", err)
	}
}

// TestRunSeeds: a run's own "seeds" trains it with only those of the spec's seeds, and the results
// count only those units.
func TestRunSeeds(t *testing.T) {
	s, err := Parse([]byte(`{"name": "x", "out": "` + t.TempDir() + `", "seeds": [1, 2, 3], "base": {"steps": 3},
		"runs": [{"name": "ce", "set": {"objective": "ce"}}, {"name": "hdge", "seeds": [2, 1]},
		         {"name": "probe", "seeds": [1], "set": {"init": "{run:hdge}", "freeze-features": true}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	units, err := s.Units(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range units {
		got = append(got, fmt.Sprintf("%s/%d", u.Run, u.Seed))
	}
	if want := "ce/1 hdge/1 probe/1 ce/2 hdge/2 ce/3"; strings.Join(got, " ") != want {
		t.Errorf("units %v, want %s (seed by seed, each run only with its own seeds)", got, want)
	}
	units, err = s.Units([]string{"probe"}, []uint64{3})
	if err != nil || len(units) != 0 {
		t.Errorf("--only probe --seeds 3: %v units, err %v; want none (probe has no seed 3)", len(units), err)
	}
	res, err := Aggregate(s)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 6 {
		t.Errorf("aggregate counts %d units, want 6", res.Total)
	}
}

// TestShippedSpecs: every spec in experiments/ loads, and the grid ones cover what they are for.
func TestShippedSpecs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testutil.RepoRoot(), "experiments", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no specs found: %v", err)
	}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, r := range s.Runs {
			if _, err := s.Config(r.Name, s.Seeds[0]); err != nil {
				t.Errorf("%s: %s: %v", f, r.Name, err)
			}
		}
	}
}

// TestGridAtDefaults: the Fashion-MNIST grid and K ablation the README reads are what they say they
// are: `hdge-torch train`'s defaults (only settings that do not change what is learnt differ), the
// grid has the five runs with at least three seeds, and k65536 is the grid's hdge-official.
func TestGridAtDefaults(t *testing.T) {
	load := func(name string) *Spec {
		s, err := Load(filepath.Join(testutil.RepoRoot(), "experiments", name))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	grid, k := load("fashion-grid.json"), load("fashion-k.json")
	if got := strings.Join(grid.RunNames(), ","); got != "ce,hdge-official,hdge-eq13,hdge-alpha0,hdge-no-norm" {
		t.Errorf("grid runs: %s", got)
	}
	if len(grid.Seeds) < 3 {
		t.Errorf("grid seeds: %v", grid.Seeds)
	}
	def := trainer.Defaults()
	off, err := grid.Config("hdge-official", 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := configDiff(def, off); len(diff) > 0 || !def.SameLength(off) {
		t.Errorf("grid's hdge-official is not hdge-torch train's defaults: %v (epochs %d steps %d)", diff, off.Epochs, off.Steps)
	}
	k65536, err := k.Config("k65536", 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := configDiff(off, k65536); len(diff) > 0 || !off.SameLength(k65536) {
		t.Errorf("k65536 differs from the grid's hdge-official: %v", diff)
	}
}

func TestStat(t *testing.T) {
	st := &Stat{Values: []float64{1, 2, 3, 6}}
	st.finish()
	if st.N != 4 || st.Mean != 3 || st.Std == nil || math.Abs(*st.Std-math.Sqrt(14.0/3)) > 1e-15 {
		t.Errorf("stat of 1,2,3,6: %+v", st)
	}
	one := &Stat{Values: []float64{0.5}}
	one.finish()
	if one.Std != nil || fmtStat(one, 100, 1) != "50.0" {
		t.Errorf("one seed: %+v, shown %q", one, fmtStat(one, 100, 1))
	}
	if got := fmtStat(st, 1, 2); got != "3.00 ± 2.16" {
		t.Errorf("fmtStat = %q", got)
	}
	if got := fmtDelta(&Delta{Diff: -0.0123}, 100, 2); got != "-1.23" {
		t.Errorf("fmtDelta = %q", got)
	}
	for e, want := range map[float64]string{0: "0", 2.0 / 255: "2/255", 8.0 / 255: "8/255", 0.25: "0.25", 1: "1"} {
		if got := epsText(e); got != want {
			t.Errorf("epsText(%v) = %q, want %q", e, got, want)
		}
	}
}

// TestRunLength: with --steps the epoch count is not part of a run's length (a changed default
// must not invalidate finished runs), and a cosine run cannot be lengthened, since its learning
// rate follows the length.
func TestRunLength(t *testing.T) {
	dir := t.TempDir()
	old := trainer.Defaults()
	old.Epochs, old.Steps, old.Schedule = 2, 400, "step"
	b, _ := json.Marshal(old)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(epochs, steps int, schedule string) error {
		c := old
		c.Epochs, c.Steps, c.Schedule = epochs, steps, schedule
		return Unit{Dir: dir, cfg: c}.checkDir()
	}
	if err := check(4, 400, "step"); err != nil {
		t.Errorf("same --steps, other --epochs: %v", err)
	}
	if err := check(2, 800, "step"); err != nil {
		t.Errorf("a step-schedule run lengthened: %v", err)
	}
	if err := check(2, 200, "step"); err == nil || !strings.Contains(err.Error(), "cannot be shortened") && !strings.Contains(err.Error(), "not shortened") {
		t.Errorf("shortened: err = %v", err)
	}
	old.Schedule = "cosine"
	b, _ = json.Marshal(old)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := check(2, 800, "cosine"); err == nil || !strings.Contains(err.Error(), "cannot be lengthened") {
		t.Errorf("a cosine run lengthened: err = %v", err)
	}
}

// TestRestartsCounted: a run that rolls back from divergences has them counted in the tables, and
// one that gives up after --max-restarts is listed as failed with the reason.
func TestRestartsCounted(t *testing.T) {
	s := smokeSpec(t)
	s.Seeds = []uint64{1}
	s.Runs = []RunSpec{{Name: "ce", Set: map[string]any{"objective": "ce"}},
		{Name: "jem", Set: map[string]any{"objective": "jem", "norm": "none", "sgld-steps": 1, "buffer-size": 100,
			"on-divergence": "restart", "max-restarts": 1, "divergence-energy": 1e-9}}}
	res, err := Run(context.Background(), s, Options{Log: zap.NewNop()})
	if err == nil {
		t.Fatal("the sitting succeeded although jem diverges at every step")
	}
	if res == nil || !res.Diverged || res.Done != 1 {
		t.Fatalf("results %+v: want ce done and the divergence noticed", res)
	}
	if tlog, err := trainer.ReadTrainingLog(s.RunDir("jem", 1)); err != nil || len(tlog.Restarts) != 1 {
		t.Errorf("jem: %d restarts counted (%v), want 1 (--max-restarts 1)", len(tlog.Restarts), err)
	}
	md := res.Markdown()
	if !strings.Contains(md, "| restarts |") || !strings.Contains(md, "| 0 |\n") {
		t.Errorf("the classification table has no restarts column, or ce's count is not 0:\n%s", md)
	}
	ce := res.Runs[0].Metrics[KeyLogitNorm]
	if !strings.Contains(md, "| final logit norm |") || ce == nil || ce.N != 1 || !(ce.Mean > 0) {
		t.Errorf("ce's final logit norm %+v is not in the table:\n%s", ce, md)
	}
	if !strings.Contains(md, "seed 1 failed") || !strings.Contains(md, "--max-restarts") {
		t.Errorf("the notes do not say that jem seed 1 failed after its restarts:\n%s", md)
	}
}

// TestDivergedRunEvaluated: a run that ends by divergence after validating is evaluated at its
// best checkpoint and is in the tables with a note saying so; the next sitting leaves it alone.
func TestDivergedRunEvaluated(t *testing.T) {
	s := smokeSpec(t)
	s.Seeds = []uint64{1}
	s.Base["schedule"], s.Base["steps"], s.Base["val-every"] = "step", json.Number("4"), json.Number("2")
	s.Runs = []RunSpec{{Name: "ce", Set: map[string]any{"objective": "ce"}}}
	if _, err := Run(context.Background(), s, Options{Log: zap.NewNop()}); err != nil {
		t.Fatal(err)
	}
	// Lengthened, with a CE threshold every step passes: it diverges right after step 4.
	s.Base["steps"] = json.Number("8")
	s.Runs[0].Set = map[string]any{"objective": "ce", "divergence-ce": 1e-9, "on-divergence": "restart", "max-restarts": 1}
	res, err := Run(context.Background(), s, Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatalf("sitting with the divergence: %v", err)
	}
	notes := strings.Join(res.Runs[0].Notes, "\n")
	if res.Done != 1 || !strings.Contains(notes, "ended by divergence at step") || !strings.Contains(notes, "after 1 restarts") {
		t.Fatalf("%d of %d done, notes %q: want ce in the tables with a note on its divergence", res.Done, res.Total, notes)
	}
	if st, _ := readState(s.RunDir("ce", 1)); st == nil || st.Segments[len(st.Segments)-1].Outcome != "diverged" || st.Failed != "" {
		t.Errorf("state %+v: want the last segment diverged and no failure", st)
	}
	obsCore, logs := observer.New(zap.InfoLevel)
	if _, err := Run(context.Background(), s, Options{Log: zap.New(obsCore)}); err != nil {
		t.Fatal(err)
	}
	if n := count(logs, "training", "", 0) + count(logs, "evaluating", "", 0); n != 0 {
		t.Errorf("the sitting after the divergence trained or evaluated %d times, want 0", n)
	}
}
