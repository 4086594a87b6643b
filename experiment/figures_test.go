package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot/vg"

	"github.com/hdge-torch/hdge-torch/eval"
)

// TestFigures: the smoke grid with ce done for both seeds, hdge for one and a third run never
// trained. Aggregate draws the robustness curves per norm, the reliability diagrams and the
// log q(x) histograms per OOD set side by side into OUT/figures, embeds them in results.md with
// relative links, names the run left out in every caption, and a second aggregate leaves every
// figure as it was, byte for byte, removing only a figure it no longer draws.
func TestFigures(t *testing.T) {
	s := smokeSpecEdited(t, func(raw map[string]any) {
		raw["runs"] = append(raw["runs"].([]any), map[string]any{"name": "later", "set": map[string]any{"objective": "ce", "lr": 0.002}})
	})
	if _, err := Run(context.Background(), s, Options{Only: []string{"ce"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), s, Options{Only: []string{"hdge"}, Seeds: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	res, err := Aggregate(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.FigureNotes) > 0 {
		t.Errorf("figure notes: %q", res.FigureNotes)
	}

	pw, ph := int(math.Round(float64(eval.FigureWidth/vg.Inch)*eval.FigureDPI)), int(math.Round(float64(eval.FigureHeight/vg.Inch)*eval.FigureDPI))
	want := map[string]struct{ kind, caption string }{
		"figures/robustness_linf.png": {FigureRobustness, "2-step PGD accuracy (%) under L∞ attacks on the first 20 test images"},
		"figures/robustness_l2.png":   {FigureRobustness, "under L2 attacks"},
		"figures/reliability.png":     {FigureReliability, "pooled over the seeds done"},
		"figures/logqx_interp.png":    {FigureLogQX, "(ce seed 1, hdge seed 1: RUN/seed-SEED/eval/logits/test.npy and interp.npy)"},
		"figures/logqx_uniform.png":   {FigureLogQX, "against uniform"},
		"figures/logqx_gaussian.png":  {FigureLogQX, "against gaussian"},
	}
	md, err := os.ReadFile(filepath.Join(s.Out, ResultsMarkdown))
	if err != nil {
		t.Fatal(err)
	}
	section := string(md)
	if i := strings.Index(section, "### Figures\n"); i < 0 {
		t.Fatalf("results.md has no figures section:\n%s", md)
	} else {
		section = section[i:]
	}
	var files []string
	for _, f := range res.Figures {
		files = append(files, f.File)
		w, ok := want[f.File]
		if !ok || f.Kind != w.kind {
			t.Errorf("unexpected figure %+v", f)
			continue
		}
		if !strings.Contains(f.Caption, w.caption) || !strings.HasSuffix(f.Caption, "Left out, not yet evaluated: later.") {
			t.Errorf("%s: caption %q lacks %q or the run left out", f.File, f.Caption, w.caption)
		}
		if !slices.Equal(f.Runs, []string{"ce", "hdge"}) {
			t.Errorf("%s draws %v, want ce and hdge", f.File, f.Runs)
		}
		if !strings.Contains(section, f.Caption+"\n\n!["+f.Title+"]("+f.File+")\n") {
			t.Errorf("results.md does not embed %s with its caption", f.File)
		}
		pb, err := os.ReadFile(filepath.Join(s.Out, filepath.FromSlash(f.File)))
		if err != nil {
			t.Fatal(err)
		}
		// EVAL_PLOT_DIR keeps the figures to look at, as in package eval's tests.
		if dir := os.Getenv("EVAL_PLOT_DIR"); dir != "" {
			if err := os.WriteFile(filepath.Join(dir, "experiment_"+filepath.Base(f.File)), pb, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(pb))
		if err != nil {
			t.Fatalf("%s: %v", f.File, err)
		}
		// One panel per run drawn, side by side; the robustness curves share one plot.
		wantW := pw
		if f.Kind != FigureRobustness {
			wantW = 2 * pw
			if f.Panels != 2 || f.Columns != 2 {
				t.Errorf("%s: %d panels in %d columns, want 2 in 2", f.File, f.Panels, f.Columns)
			}
		}
		if cfg.Width != wantW || cfg.Height != ph {
			t.Errorf("%s: %d×%d pixels, want %d×%d", f.File, cfg.Width, cfg.Height, wantW, ph)
		}
	}
	slices.Sort(files)
	if len(files) != len(want) {
		t.Errorf("figures %v, want the %d of %v", files, len(want), want)
	}
	// Every image link of results.md names a file under its folder.
	for _, m := range regexp.MustCompile(`!\[[^]]*\]\(([^)]+)\)`).FindAllStringSubmatch(string(md), -1) {
		if filepath.IsAbs(m[1]) || !exists(filepath.Join(s.Out, filepath.FromSlash(m[1]))) {
			t.Errorf("results.md links %s, which is not a file under the results' folder", m[1])
		}
	}

	// Aggregating again writes the same bytes, and leaves the files untouched; a figure no longer
	// drawn goes, other files stay.
	before := map[string][]byte{}
	mtimes := map[string]time.Time{}
	for _, f := range files {
		p := filepath.Join(s.Out, filepath.FromSlash(f))
		before[f], _ = os.ReadFile(p)
		mtimes[f] = mtime(t, p)
	}
	stale, other := filepath.Join(s.Out, FiguresDir, "logqx_gone.png"), filepath.Join(s.Out, FiguresDir, "notes.txt")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res2, err := Aggregate(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(s.Out, filepath.FromSlash(f))
		after, _ := os.ReadFile(p)
		if !bytes.Equal(after, before[f]) {
			t.Errorf("%s changed on the second aggregate", f)
		}
		if !mtime(t, p).Equal(mtimes[f]) {
			t.Errorf("%s was rewritten on the second aggregate", f)
		}
	}
	if exists(stale) || !exists(other) {
		t.Errorf("after the second aggregate: stale figure there %v, other file there %v", exists(stale), exists(other))
	}
	// Without hdge's exported logits its histograms go, saying why; the other figures stay.
	logits := filepath.Join(s.RunDir("hdge", 1), evalDir, "logits")
	if err := os.Rename(logits, logits+".away"); err != nil {
		t.Fatal(err)
	}
	res3, err := Aggregate(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logits+".away", logits); err != nil {
		t.Fatal(err)
	}
	if len(res3.Figures) != len(files) {
		t.Errorf("without hdge's logits: %d figures, want %d", len(res3.Figures), len(files))
	}
	for _, f := range res3.Figures {
		wantRuns := []string{"ce", "hdge"}
		if f.Kind == FigureLogQX {
			wantRuns = []string{"ce"}
			if !strings.HasSuffix(f.Caption, "Left out, not yet evaluated: later; no exported logits: hdge.") {
				t.Errorf("%s without hdge's logits: caption %q", f.File, f.Caption)
			}
		}
		if !slices.Equal(f.Runs, wantRuns) || f.Panels != len(wantRuns) && f.Kind != FigureRobustness {
			t.Errorf("%s without hdge's logits: runs %v in %d panels", f.File, f.Runs, f.Panels)
		}
	}

	b1, _ := json.Marshal(res.Figures)
	b2, _ := json.Marshal(res2.Figures)
	if !bytes.Equal(b1, b2) {
		t.Errorf("figures differ between two aggregates:\n%s\n%s", b1, b2)
	}
}
