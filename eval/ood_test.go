package eval

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type sklearnCase struct {
	Name          string    `json:"name"`
	In            []float64 `json:"in"`
	Out           []float64 `json:"out"`
	AUROC         float64   `json:"auroc"`
	AUPRIn        float64   `json:"aupr_in"`
	AUPROut       float64   `json:"aupr_out"`
	FPR95         float64   `json:"fpr95"`
	ROCFPR        []float64 `json:"roc_fpr"`
	ROCTPR        []float64 `json:"roc_tpr"`
	ROCThresholds []float64 `json:"roc_thresholds"`
	ROCAllFPR     []float64 `json:"roc_all_fpr"`
	ROCAllTPR     []float64 `json:"roc_all_tpr"`
}

type sklearnFixture struct {
	Sklearn string        `json:"sklearn"`
	Seed    int64         `json:"seed"`
	Cases   []sklearnCase `json:"cases"`
}

const sklearnTol = 1e-9

func checkSklearnCases(t *testing.T, fx sklearnFixture) {
	t.Helper()
	if len(fx.Cases) == 0 {
		t.Fatal("fixture has no cases")
	}
	for _, c := range fx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			m, err := OOD(c.In, c.Out)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range []struct {
				what      string
				got, want float64
			}{
				{"AUROC", m.AUROC, c.AUROC}, {"AUPR-in", m.AUPRIn, c.AUPRIn},
				{"AUPR-out", m.AUPROut, c.AUPROut}, {"FPR95", m.FPR95, c.FPR95},
			} {
				if math.Abs(x.got-x.want) > sklearnTol {
					t.Errorf("%s = %.17g, sklearn %.17g", x.what, x.got, x.want)
				}
			}
			scores := append(append([]float64{}, c.In...), c.Out...)
			pos := make([]bool, len(scores))
			for i := range c.In {
				pos[i] = true
			}
			fpr, tpr, thr, err := ROCCurve(scores, pos, true)
			if err != nil {
				t.Fatal(err)
			}
			compareSlices(t, "roc fpr", fpr, c.ROCFPR)
			compareSlices(t, "roc tpr", tpr, c.ROCTPR)
			compareSlices(t, "roc thresholds", thr, c.ROCThresholds)
			fpr, tpr, _, err = ROCCurve(scores, pos, false)
			if err != nil {
				t.Fatal(err)
			}
			compareSlices(t, "roc fpr (all)", fpr, c.ROCAllFPR)
			compareSlices(t, "roc tpr (all)", tpr, c.ROCAllTPR)
		})
	}
}

func compareSlices(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d points, sklearn %d", what, len(got), len(want))
		return
	}
	for i := range got {
		// Thresholds span 1e300; compare relatively there.
		if d := math.Abs(got[i] - want[i]); d > sklearnTol*math.Max(1, math.Abs(want[i])) {
			t.Errorf("%s[%d] = %.17g, sklearn %.17g", what, i, got[i], want[i])
			return
		}
	}
}

func TestOODMatchesSklearnFixture(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "sklearn_ood.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx sklearnFixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatalf("testdata/sklearn_ood.json: %v", err)
	}
	checkSklearnCases(t, fx)
}

// TestOODMatchesSklearnLive reruns the generator with a fresh seed and larger sets, so agreement
// is not limited to the cases someone happened to check in.
func TestOODMatchesSklearnLive(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no system python3")
	}
	if err := exec.Command(py, "-c", "import sklearn.metrics").Run(); err != nil {
		t.Skip("python3 has no sklearn")
	}
	seed := strconv.FormatInt(time.Now().UnixNano()%1_000_000_007, 10)
	cmd := exec.Command(py, filepath.Join("testdata", "sklearn_ood.py"), "--seed", seed, "--large", "20000")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sklearn_ood.py --seed %s: %v\n%s", seed, err, stderr.String())
	}
	var fx sklearnFixture
	if err := json.Unmarshal(out, &fx); err != nil {
		t.Fatal(err)
	}
	t.Logf("sklearn %s, seed %s", fx.Sklearn, seed)
	checkSklearnCases(t, fx)
}

func TestOODHandWorked(t *testing.T) {
	// in {0.9, 0.2}, out {0.4, 0.1}: of the 4 in/out pairs, 3 rank the in sample higher, AUROC 3/4.
	// Descending: 0.9(in) 0.4(out) 0.2(in) 0.1(out); AP_in = 0.5·1 + 0.5·(2/3) = 5/6.
	// TPR reaches 1 ≥ 0.95 only after 0.2, where 1 of 2 OOD samples passed: FPR95 = 0.5.
	m, err := OOD([]float64{0.9, 0.2}, []float64{0.4, 0.1})
	if err != nil {
		t.Fatal(err)
	}
	want := OODMetrics{AUROC: 0.75, AUPRIn: 5.0 / 6, AUPROut: 5.0 / 6, FPR95: 0.5, NIn: 2, NOut: 2}
	if math.Abs(m.AUROC-want.AUROC) > 1e-15 || math.Abs(m.AUPRIn-want.AUPRIn) > 1e-15 ||
		math.Abs(m.AUPROut-want.AUPROut) > 1e-15 || m.FPR95 != want.FPR95 || m.NIn != 2 || m.NOut != 2 {
		t.Errorf("got %+v, want %+v", m, want)
	}
}

func TestOODErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		in, out []float64
		want    string
	}{
		{"no in", nil, []float64{1}, "no in-distribution"},
		{"no out", []float64{1}, nil, "no out-of-distribution"},
		{"nan in", []float64{1, math.NaN()}, []float64{0}, "in-distribution score 1 is NaN"},
		{"nan out", []float64{1}, []float64{math.NaN()}, "out-of-distribution score 0 is NaN"},
	} {
		_, err := OOD(c.in, c.out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
	}
	if _, err := ROCAUC([]float64{1, 2}, []bool{true}); err == nil || !strings.Contains(err.Error(), "length 2") {
		t.Errorf("mismatched lengths: %v", err)
	}
	if _, err := ROCAUC([]float64{1, 2}, []bool{true, true}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("single class: %v", err)
	}
	if _, err := FPRAtTPR([]float64{1, 2}, []bool{true, false}, 1.5); err == nil {
		t.Error("TPR 1.5 accepted")
	}
}
