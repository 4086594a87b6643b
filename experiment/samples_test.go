package experiment

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/gen"
)

// TestSamplesInResults: the smoke grid (classification only), then samples drawn into
// RUN/samples as `make experiment-jem` draws them, hdge's scored in the features of the CE run of
// the same seed and ce's unscored. The aggregate has IS (classifier) and FD (classifier features)
// over hdge's seeds and links one seed's grids; the next `experiment run` adds the samples to the
// evaluation reports without evaluating again, once; a damaged samples folder becomes a note.
func TestSamplesInResults(t *testing.T) {
	s := smokeSpecEdited(t, func(raw map[string]any) { raw["eval"] = map[string]any{"suites": "classify"} })
	if _, err := Run(context.Background(), s, Options{}); err != nil {
		t.Fatal(err)
	}

	gens := map[uint64]*eval.Generation{}
	offRange := map[uint64]float64{}
	for _, seed := range s.Seeds {
		g := gen.DefaultConfig()
		g.Checkpoint, g.Out, g.Class, g.N, g.Steps, g.Top, g.RealN = s.RunDir("hdge", seed), filepath.Join(s.RunDir("hdge", seed), "samples"), "all", 2, 2, 1, 40
		g.FeatureCheckpoint = s.RunDir("ce", seed)
		res, err := gen.Run(g)
		if err != nil {
			t.Fatal(err)
		}
		gens[seed] = res.Generation
		offRange[seed] = res.Info.OutsideRange
	}
	g := gen.DefaultConfig()
	g.Checkpoint, g.Out, g.N, g.Steps, g.Top = s.RunDir("ce", 1), filepath.Join(s.RunDir("ce", 1), "samples"), 4, 2, 0
	if _, err := gen.Run(g); err != nil {
		t.Fatal(err)
	}

	res, err := Aggregate(s)
	if err != nil {
		t.Fatal(err)
	}
	hd, ce := res.run("hdge"), res.run("ce")
	for key, want := range map[string][2]float64{
		KeyISClassifier: {gens[1].ISMean, gens[2].ISMean},
		KeyFDClassifier: {gens[1].FD, gens[2].FD},
		KeyOffRange:     {offRange[1], offRange[2]},
	} {
		st := hd.Metrics[key]
		if st == nil || st.N != 2 || st.Values[0] != want[0] || st.Values[1] != want[1] || st.Std == nil ||
			math.Abs(st.Mean-(want[0]+want[1])/2) > 1e-12 || math.Abs(*st.Std-math.Abs(want[0]-want[1])/math.Sqrt2) > 1e-9 {
			t.Errorf("hdge %s: %+v, want the mean and std of %v", key, st, want)
		}
		if ce.Metrics[key] != nil && key != KeyOffRange {
			t.Errorf("ce's unscored samples gave %s %+v", key, ce.Metrics[key])
		}
	}
	if hd.Samples == nil || hd.Samples.Seed != 1 || hd.Samples.Grid != "hdge/seed-1/samples/samples.png" || hd.Samples.Top != "hdge/seed-1/samples/top.png" ||
		!strings.HasPrefix(hd.Samples.FeatureNet, "classifier:") || len(hd.FeatureNets) != 2 {
		t.Errorf("hdge samples %+v, feature nets %v", hd.Samples, hd.FeatureNets)
	}
	if ce.Samples == nil || ce.Samples.Grid != "ce/seed-1/samples/samples.png" || ce.Samples.Top != "" {
		t.Errorf("ce samples %+v", ce.Samples)
	}
	if hd.Samples == nil || ce.Samples == nil {
		t.FailNow()
	}
	for _, l := range []string{hd.Samples.Grid, hd.Samples.Top, ce.Samples.Grid} {
		if !exists(filepath.Join(s.Out, filepath.FromSlash(l))) {
			t.Errorf("the link %s names no file under the results' folder", l)
		}
	}
	md, err := os.ReadFile(filepath.Join(s.Out, ResultsMarkdown))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"### Samples",
		"| run | seeds | IS (classifier) | FD (classifier features) | off range (%) | samples |",
		"| hdge | 2 | " + fmtStat(hd.Metrics[KeyISClassifier], 1, 2) + " | " + fmtStat(hd.Metrics[KeyFDClassifier], 1, 2) + " | " +
			fmtStat(hd.Metrics[KeyOffRange], 100, 1) + " | [grid, seed 1](hdge/seed-1/samples/samples.png), [most confident](hdge/seed-1/samples/top.png) |",
		"| ce | 0 | – | – | " + fmtStat(ce.Metrics[KeyOffRange], 100, 1) + " | [grid, seed 1](ce/seed-1/samples/samples.png) |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(string(md), "FID") {
		t.Error("results.md calls classifier-feature numbers FID")
	}

	// The next sitting adds the samples to hdge's reports, re-scoring their exports; ce's unscored
	// samples stay out. The sitting after finds nothing to do.
	for sitting, want := range []int{2, 0} {
		obsCore, logs := observer.New(zap.InfoLevel)
		if _, err := Run(context.Background(), s, Options{Log: zap.New(obsCore)}); err != nil {
			t.Fatal(err)
		}
		if n := count(logs, "evaluation done before the samples: adding them to its report", "", 0); n != want {
			t.Errorf("sitting %d: samples added to %d reports, want %d", sitting+2, n, want)
		}
		if n := count(logs, "evaluating", "", 0); n != 0 {
			t.Errorf("sitting %d: %d units evaluated again", sitting+2, n)
		}
	}
	for _, seed := range s.Seeds {
		out := filepath.Join(s.RunDir("hdge", seed), evalDir)
		page, err := os.ReadFile(filepath.Join(out, "report.html"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := readMetrics(filepath.Join(out, "metrics.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(page), `id="samples-samples_png"`) || !strings.Contains(string(page), "FD (classifier features)") ||
			m.Generation == nil || *m.Generation != *gens[seed] || m.Classification == nil {
			t.Errorf("hdge seed %d: the evaluation does not show its samples (generation %+v)", seed, m.Generation)
		}
	}
	page, err := os.ReadFile(filepath.Join(s.RunDir("ce", 1), evalDir, "report.html"))
	if err != nil || strings.Contains(string(page), `id="samples"`) {
		t.Errorf("ce seed 1's report shows unscored samples (%v)", err)
	}
	if res, err = Aggregate(s); err != nil || res.Done != 4 {
		t.Fatalf("after adding the samples: %v, %+v", err, res)
	}

	if err := os.WriteFile(filepath.Join(s.RunDir("hdge", 2), "samples", "metrics.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err = Aggregate(s); err != nil {
		t.Fatal(err)
	}
	hd = res.run("hdge")
	if st := hd.Metrics[KeyISClassifier]; st == nil || st.N != 1 || !strings.Contains(strings.Join(hd.Notes, "\n"), "seed 2: samples left out") {
		t.Errorf("a damaged samples/metrics.json: IS %+v, notes %q", st, hd.Notes)
	}

	// A spec that names "samples" asks every run for RUN/seed-SEED/samples: ce seed 2 has none.
	named := smokeSpecEdited(t, func(raw map[string]any) { raw["eval"] = map[string]any{"suites": "classify", "samples": "samples"} })
	named.Path, named.Base["dataset"], named.Out = s.Path, s.Base["dataset"], s.Out
	_, err = Run(context.Background(), named, Options{Only: []string{"ce"}})
	var se *SpecError
	if missing := filepath.Join(s.RunDir("ce", 2), "samples"); !errors.As(err, &se) || !strings.Contains(err.Error(), "--samples: stat "+missing) {
		t.Errorf("named samples missing for ce seed 2: err = %v, want a SpecError naming %s", err, missing)
	}
}

// TestSpecSamplesRelativeToRun: a relative "samples" in a spec's eval object names each run's
// folder, and the eval command line the results print says so.
func TestSpecSamplesRelativeToRun(t *testing.T) {
	s, err := Parse([]byte(`{"name": "x", "base": {"dataset": "fashion-mnist"}, "runs": [{"name": "jem", "set": {"objective": "ce"}}],
		"seeds": [1], "eval": {"samples": "samples", "suites": "classify"}, "out": "o"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, eval := commandTemplates(s); !strings.Contains(eval, " --samples o/RUN/seed-SEED/samples") {
		t.Errorf("eval command %q", eval)
	}
	if s.eval.cfg.Samples != "samples" {
		t.Errorf("parsed samples %q", s.eval.cfg.Samples)
	}
}
