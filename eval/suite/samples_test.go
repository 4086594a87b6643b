package suite

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/gen"
	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/trainer"
)

var dataURI = regexp.MustCompile(`data:image/png;base64,[A-Za-z0-9+/=]*`)

// TestReportShowsSamples: a tiny trained model, sampled and scored by `hdge-torch sample`'s
// package into RUN/samples, then evaluated: the report embeds the grids with the
// classifier-feature labels and metrics.json gains the generation section; without samples, or
// with an unscored or damaged default folder, neither appears; a bad --samples is refused by name.
func TestReportShowsSamples(t *testing.T) {
	tmp := t.TempDir()
	cfg := trainer.Defaults()
	cfg.Dataset = testutil.SmallFashion(t, filepath.Join(tmp, "fashion"), 200, 100)
	cfg.Model, cfg.Norm, cfg.ValSize, cfg.BatchSize, cfg.Objective = "wrn-10-1", "none", 20, 20, "ce"
	cfg.Steps, cfg.Threads, cfg.Workers, cfg.LogEvery, cfg.TensorBoard = 4, 1, 1, 2, false
	cfg.Out = filepath.Join(tmp, "run")
	if _, err := trainer.Train(t.Context(), cfg, trainer.Options{SkipTest: true}); err != nil {
		t.Fatal(err)
	}
	run := cfg.Out
	evaluate := func(c Config) (*eval.Report, string, map[string]json.RawMessage) {
		t.Helper()
		c.Suites = []string{Classify}
		r, err := Run(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		page, err := os.ReadFile(filepath.Join(c.Out, ReportFile))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		b, err := os.ReadFile(filepath.Join(c.Out, MetricsFile))
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			t.Fatal(err)
		}
		return r, string(page), m
	}
	noSamples := func(what, page string, m map[string]json.RawMessage) {
		t.Helper()
		if strings.Contains(page, `id="samples"`) || strings.Contains(page, "IS (classifier)") || m["generation"] != nil || m["samples"] != nil {
			t.Errorf("%s: the report shows samples", what)
		}
	}

	_, page, m := evaluate(Config{Checkpoint: run, Out: filepath.Join(tmp, "plain")})
	noSamples("no samples folder", page, m)

	samples := filepath.Join(run, SamplesDir)
	g := gen.DefaultConfig()
	g.Checkpoint, g.Out, g.Class, g.N, g.Steps, g.Top, g.RealN = run, samples, "all", 2, 2, 1, 40
	// Unscored samples are not the sample command's metrics.json: the default lookup skips them.
	if _, err := gen.Run(g); err != nil {
		t.Fatal(err)
	}
	_, page, m = evaluate(Config{Checkpoint: run, Out: filepath.Join(tmp, "unscored")})
	noSamples("unscored samples", page, m)

	g.FeatureCheckpoint = run
	res, err := gen.Run(g)
	if err != nil {
		t.Fatal(err)
	}
	grid, err := os.ReadFile(filepath.Join(samples, gen.GridFile))
	if err != nil {
		t.Fatal(err)
	}
	top, err := os.ReadFile(filepath.Join(samples, gen.TopFile))
	if err != nil {
		t.Fatal(err)
	}
	shows := func(what, page string, m map[string]json.RawMessage, dir string) {
		t.Helper()
		page = html.UnescapeString(page) // html/template writes a data URI's + as &#43;
		for _, want := range []string{
			`id="samples"`,
			`id="samples-samples_png" src="data:image/png;base64,` + base64.StdEncoding.EncodeToString(grid) + `"`,
			`id="samples-top_png" src="data:image/png;base64,` + base64.StdEncoding.EncodeToString(top) + `"`,
			"one row per class", "IS (classifier)", "FD (classifier features)", res.Generation.FeatureNet,
			"2 per class of 10 classes",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("%s: report.html lacks %.120q", what, want)
			}
		}
		if strings.Contains(dataURI.ReplaceAllString(page, ""), "FID") {
			t.Errorf("%s: classifier-feature numbers are called FID", what)
		}
		var got eval.Generation
		if err := json.Unmarshal(m["generation"], &got); err != nil || got != *res.Generation {
			t.Errorf("%s: metrics.json generation %s, want %+v (%v)", what, m["generation"], *res.Generation, err)
		}
		var s struct {
			Dir   string
			Files []string
		}
		if err := json.Unmarshal(m["samples"], &s); err != nil || s.Dir != dir || strings.Join(s.Files, ",") != "samples.png,top.png" {
			t.Errorf("%s: metrics.json samples %s, want dir %s", what, m["samples"], dir)
		}
	}
	// Found by default in RUN/samples, from a run folder or a checkpoint file.
	r, page, m := evaluate(Config{Checkpoint: run, Out: filepath.Join(run, "eval")})
	shows("RUN/samples", page, m, "../samples")
	if r.Generation == nil || r.Classification == nil {
		t.Fatalf("report %+v", r)
	}
	_, page, m = evaluate(Config{Checkpoint: filepath.Join(run, "checkpoints", "best.pt"), Out: filepath.Join(run, "eval-best")})
	shows("checkpoint file", page, m, "../samples")
	// Named, with an export re-scored.
	_, page, m = evaluate(Config{Logits: filepath.Join(run, "eval", LogitsDir), Out: filepath.Join(tmp, "rescored"), Samples: samples})
	shows("--samples with --logits", page, m, "../run/samples")

	// A damaged default folder is left out; the same folder named is refused, naming the file.
	bad := filepath.Join(tmp, "bad")
	if err := os.CopyFS(bad, os.DirFS(samples)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, gen.GridFile), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(samples, samples+".good"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bad, samples); err != nil {
		t.Fatal(err)
	}
	_, page, m = evaluate(Config{Checkpoint: run, Out: filepath.Join(tmp, "damaged")})
	noSamples("damaged RUN/samples", page, m)
	if err := os.WriteFile(filepath.Join(tmp, "notjson"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(tmp, "broken-metrics")
	if err := os.CopyFS(broken, os.DirFS(samples+".good")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, gen.MetricsFile), []byte(`{"generation": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{filepath.Join(tmp, "nowhere"), "nowhere"},
		{filepath.Join(tmp, "notjson"), "not a folder"},
		{filepath.Join(tmp, "fashion"), "no sample grid"},
		{bad, "samples.png is not a PNG"},
		{broken, filepath.Join(broken, gen.MetricsFile)},
	} {
		out := filepath.Join(tmp, "refused")
		_, err := Run(t.Context(), Config{Checkpoint: run, Out: out, Suites: []string{Classify}, Samples: tc.dir})
		var ie *InputError
		if !errors.As(err, &ie) || ie.Flag != "samples" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--samples %s: err = %v, want --samples naming %q", tc.dir, err, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--samples %s: the refused evaluation created its output folder", tc.dir)
		}
	}
}
