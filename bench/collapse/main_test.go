package main

import (
	"encoding/csv"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hdge-torch/hdge-torch/data"
)

func TestLogitStats(t *testing.T) {
	// Rows of norms 5, 1, 13, 2 (3-4-0, 1-0-0, 5-12-0, 0-0-2); argmaxes 1, 0, 1, 2.
	logits := []float64{3, 4, 0, 1, 0, 0, 5, 12, 0, 0, 0, 2}
	acc, mean, median := logitStats(logits, []int64{1, 2, 1, 2})
	if acc != 0.75 {
		t.Errorf("accuracy %v, want 0.75", acc)
	}
	if mean != 21.0/4 {
		t.Errorf("mean norm %v, want %v", mean, 21.0/4)
	}
	if median != 3.5 { // the mean of the middle two of 1, 2, 5, 13, as numpy's
		t.Errorf("median norm %v, want 3.5", median)
	}
	if _, _, m := logitStats(logits[:9], []int64{0, 0, 0}); m != 5 {
		t.Errorf("median of 5, 1, 13: %v, want 5", m)
	}
}

// The tool is only useful if both sides start from the same state: a few steps on the exported
// inputs agree to float32 rounding, so a later parting is the training's, not the set-up's.
func TestSidesAgreeOnFirstSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on both sides")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if _, err := data.DefaultSource("").Load("fashion-mnist", data.Train); err != nil {
		t.Skipf("no Fashion-MNIST: %v", err)
	}
	dir := t.TempDir()
	if err := export([]string{"--dir", dir, "--steps", "3", "--batch-size", "8", "--model", "wrn-10-1", "--queue-size", "64"}); err != nil {
		t.Fatal(err)
	}
	if err := train([]string{"--dir", dir}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", "collapse.py", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("collapse.py: %v\n%s", err, out)
	}
	goRows, pyRows := readCSV(t, filepath.Join(dir, "go.csv")), readCSV(t, filepath.Join(dir, "py.csv"))
	if len(goRows) != 4 || len(pyRows) != 4 {
		t.Fatalf("%d and %d rows, want a header and 3 steps each", len(goRows), len(pyRows))
	}
	for i := range goRows {
		for j, name := range goRows[0] {
			if i == 0 {
				if pyRows[0][j] != name {
					t.Fatalf("column %d: go %q, python %q", j, name, pyRows[0][j])
				}
				continue
			}
			g, _ := strconv.ParseFloat(goRows[i][j], 64)
			p, _ := strconv.ParseFloat(pyRows[i][j], 64)
			if math.Abs(g-p) > 1e-5*math.Max(1, math.Abs(p)) {
				t.Errorf("step %d %s: go %v, python %v", i-1, name, g, p)
			}
		}
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
