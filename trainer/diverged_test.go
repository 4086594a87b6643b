package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
)

// TestDivergedRunKeepsItsBestCheckpoint: a run that diverges after validating ends with a
// *DivergedError and a summary.json that says so and names its best checkpoint, so it can be
// evaluated as the method's result; one that diverges before any validation writes no summary.
func TestDivergedRunKeepsItsBestCheckpoint(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 200, 100)
	c := tinyConfig(t, ds)
	c.Objective, c.Epochs, c.Steps, c.Schedule, c.ValEvery, c.CkptEvery = "ce", 0, 4, "step", 2, 2
	if _, err := Train(context.Background(), c, Options{SkipTest: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(c.Out, "summary.json")); err != nil {
		t.Fatal(err)
	}
	// Continued to 8 steps with a CE threshold every step passes: the first step after the
	// checkpoint at 4 diverges (it reports the step count it started from).
	c.Steps, c.DivergenceCE, c.OnDivergence, c.MaxRestarts = 8, 1e-9, "restart", 1
	_, err := Train(context.Background(), c, Options{SkipTest: true, Resume: c.Out})
	var de *DivergedError
	if !errors.As(err, &de) || de.Step < 4 || de.Step > 5 || de.Restarts != 1 || !strings.Contains(de.Reason, "--divergence-ce") {
		t.Fatalf("err = %v (%+v), want a DivergedError right after step 4, after 1 restart", err, de)
	}
	b, err := os.ReadFile(filepath.Join(c.Out, "summary.json"))
	if err != nil {
		t.Fatalf("no summary.json after the divergence: %v", err)
	}
	var sum Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Diverged == nil || sum.Diverged.Step != de.Step || sum.Diverged.Restarts != 1 || sum.Steps != de.Step ||
		filepath.Base(sum.Checkpoint) != "best.pt" || !(sum.BestValAcc > 0) {
		t.Errorf("summary %s: want diverged at step %d after 1 restart, its best.pt and best validation accuracy", b, de.Step)
	}

	// Diverging at step 1, before any validation: nothing worth evaluating, no summary.
	c2 := tinyConfig(t, ds)
	c2.Objective, c2.Epochs, c2.Steps, c2.ValEvery, c2.DivergenceCE = "ce", 0, 4, 2, 1e-9
	_, err = Train(context.Background(), c2, Options{SkipTest: true})
	if !errors.As(err, &de) || de.Step > 1 || !strings.Contains(err.Error(), "the run stopped") {
		t.Fatalf("--on-divergence stop at step 1: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(c2.Out, "summary.json")); err == nil {
		t.Error("a run that diverged before validating wrote summary.json")
	}
}
