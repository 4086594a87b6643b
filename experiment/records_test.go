package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// keepTracked deletes every file under out that experiments/.gitignore would keep out of git, as
// a fresh clone of a committed experiment would have it; it returns the files kept.
func keepTracked(t *testing.T, out string) []string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	var rels []string
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(out, p)
		rels = append(rels, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Asked as if the folder were experiments/out/NAME in the repository.
	var in bytes.Buffer
	for _, r := range rels {
		in.WriteString("experiments/out/records/" + r + "\n")
	}
	cmd := exec.Command("git", "check-ignore", "--no-index", "--stdin")
	cmd.Dir, cmd.Stdin = testutil.RepoRoot(), &in
	outb, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) { // 1: none ignored
		t.Fatalf("git check-ignore: %v", err)
	}
	ignored := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(outb)), "\n") {
		ignored[strings.TrimPrefix(l, "experiments/out/records/")] = true
	}
	var kept []string
	for _, r := range rels {
		if ignored[r] {
			if err := os.Remove(filepath.Join(out, r)); err != nil {
				t.Fatal(err)
			}
		} else {
			kept = append(kept, r)
		}
	}
	return kept
}

// TestRecordsInGit: the files experiments/.gitignore lets git keep are enough for a clone to hold
// every finished unit: the next sitting trains and evaluates nothing and the tables are the same.
// A unit whose evaluation must be redone without its checkpoints is an error that keeps its
// records, not a silent retraining or a lost row.
func TestRecordsInGit(t *testing.T) {
	s := smokeSpecEdited(t, func(raw map[string]any) {
		raw["seeds"] = []any{1}
	})
	if _, err := Run(context.Background(), s, Options{}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(s.Out, ResultsJSON))
	if err != nil {
		t.Fatal(err)
	}
	kept := keepTracked(t, s.Out)
	for _, want := range []string{"results.json", "results.md", "ce/seed-1/summary.json", "hdge/seed-1/eval/metrics.json", "hdge/seed-1/metrics.jsonl"} {
		if !strings.Contains(strings.Join(kept, " "), want) {
			t.Errorf("git would not keep %s (kept: %v)", want, kept)
		}
	}
	for _, k := range kept {
		if strings.Contains(k, "checkpoints/") || strings.Contains(k, "logits/") {
			t.Errorf("git would keep %s", k)
		}
	}

	obsCore, logs := observer.New(zap.InfoLevel)
	res, err := Run(context.Background(), s, Options{Log: zap.New(obsCore)})
	if err != nil {
		t.Fatalf("sitting on the records alone: %v", err)
	}
	if n := count(logs, "training", "", 0) + count(logs, "evaluating", "", 0); n != 0 || res.Done != 2 {
		t.Errorf("on the records alone: %d trainings or evaluations started, %d of 2 units done; want 0 and 2", n, res.Done)
	}
	after, err := os.ReadFile(filepath.Join(s.Out, ResultsJSON))
	if err != nil {
		t.Fatal(err)
	}
	accuracies := func(b []byte) []any {
		var r struct {
			Runs []struct {
				Metrics map[string]struct{ Values []any } `json:"metrics"`
			} `json:"runs"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		var out []any
		for _, run := range r.Runs {
			out = append(out, run.Metrics["accuracy"].Values, run.Metrics["ece"].Values, run.Metrics["ood.interp.logqx.auroc"].Values)
		}
		return out
	}
	if a, b := jsonText(accuracies(before)), jsonText(accuracies(after)); a != b || a == "" {
		t.Errorf("tables from the records %s, from the full folders %s", b, a)
	}

	// Other eval settings: the model is needed, the error says so and the records stay.
	s.Eval["ood-limit"] = json.Number("50")
	_, err = Run(context.Background(), s, Options{})
	if err == nil || !strings.Contains(err.Error(), "not its checkpoints") {
		t.Errorf("eval settings changed without checkpoints: err = %v", err)
	}
	if !exists(filepath.Join(s.RunDir("hdge", 1), evalDir, "metrics.json")) {
		t.Error("the failed re-evaluation deleted the committed eval/metrics.json")
	}
}
