package suite

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/npy"
)

func TestParseOOD(t *testing.T) {
	got, err := ParseOOD(" mnist, cifar10 ,interp,mine=folder:/data/Celeb A/,svhn:/x/test_32x32.mat,idx:/y/notmnist/")
	if err != nil {
		t.Fatal(err)
	}
	want := []SetSpec{{"mnist", "mnist", false}, {"cifar10", "cifar10", false}, {"interp", "interp", false},
		{"mine", "folder:/data/Celeb A/", false}, {"test_32x32", "svhn:/x/test_32x32.mat", false}, {"notmnist", "idx:/y/notmnist/", false}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseOOD:\n got %+v\nwant %+v", got, want)
	}
	if !got[2].Synthetic() || got[0].Synthetic() {
		t.Error("Synthetic: interp is, mnist is not")
	}
	for _, bad := range []string{"test", "a=mnist,a=cifar10", "Big=mnist", "x=", "=mnist", "mnist,mnist", "test=cifar10"} {
		_, err := ParseOOD(bad)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Flag != "ood" {
			t.Errorf("ParseOOD(%q) = %v, want an --ood input error", bad, err)
		}
	}
	if sets, err := ParseOOD(""); err != nil || sets != nil {
		t.Errorf("ParseOOD(\"\") = %v, %v", sets, err)
	}
}

func TestDefaultOOD(t *testing.T) {
	names := func(ss []SetSpec) (out []string) {
		for _, s := range ss {
			out = append(out, s.Name)
			if s.Optional == s.Synthetic() {
				t.Errorf("%s: optional %v", s.Name, s.Optional)
			}
		}
		return out
	}
	if got := names(DefaultOOD("fashion-mnist")); !reflect.DeepEqual(got, []string{"mnist", "cifar10", "interp", "uniform", "gaussian"}) {
		t.Errorf("fashion-mnist defaults %v", got)
	}
	if got := names(DefaultOOD("cifar10")); !reflect.DeepEqual(got, []string{"svhn", "cifar100", "interp", "uniform", "gaussian"}) {
		t.Errorf("cifar10 defaults %v", got)
	}
	if got := names(DefaultOOD("idx:/somewhere")); !reflect.DeepEqual(got, []string{"interp", "uniform", "gaussian"}) {
		t.Errorf("FORMAT:PATH defaults %v", got)
	}
}

func TestParseLists(t *testing.T) {
	eps, err := ParseEps("pgd-linf-eps", "8/255, 0,1/255,0.5,1/255")
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{0, 1.0 / 255, 8.0 / 255, 0.5}; !reflect.DeepEqual(eps, want) {
		t.Errorf("ParseEps = %v, want %v", eps, want)
	}
	for _, bad := range []string{"", "-1", "x", "1/0", "1/x", "inf", "NaN", "1/255/2"} {
		_, err := ParseEps("pgd-l2-eps", bad)
		if err == nil || !strings.Contains(err.Error(), "--pgd-l2-eps") {
			t.Errorf("ParseEps(%q) = %v, want an error naming --pgd-l2-eps", bad, err)
		}
	}
	if s, err := ParseSteps("20,10,10"); err != nil || !reflect.DeepEqual(s, []int{10, 20}) {
		t.Errorf("ParseSteps = %v, %v", s, err)
	}
	for _, bad := range []string{"", "0", "-3", "ten"} {
		if _, err := ParseSteps(bad); err == nil || !strings.Contains(err.Error(), "--pgd-steps") {
			t.Errorf("ParseSteps(%q) = %v", bad, err)
		}
	}
	if s, err := ParseSuites("ood,robustness"); err != nil || !reflect.DeepEqual(s, []string{"ood", "robustness"}) {
		t.Errorf("ParseSuites = %v, %v", s, err)
	}
	if _, err := ParseSuites("ood,speed"); err == nil || !strings.Contains(err.Error(), `--suites: unknown suite "speed"`) {
		t.Errorf("ParseSuites(speed) = %v", err)
	}
	if _, err := ParseScores("logqx,energy"); err == nil || !strings.Contains(err.Error(), "--scores") {
		t.Errorf("ParseScores(energy) = %v", err)
	}
	if _, err := ParseNorms("linf,l1"); err == nil || !strings.Contains(err.Error(), "--pgd-norms") {
		t.Errorf("ParseNorms(l1) = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Checkpoint: "run", Out: "out", PGD: DefaultPGD()}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for flag, mut := range map[string]func(*Config){
		"checkpoint":    func(c *Config) { c.Checkpoint = "" },
		"logits":        func(c *Config) { c.Logits = "dir" },
		"out":           func(c *Config) { c.Out = "" },
		"ood-limit":     func(c *Config) { c.OODLimit = -1 },
		"pgd-linf-eps":  func(c *Config) { c.PGD.Eps = map[string][]float64{"linf": {2}, "l2": {1}} },
		"pgd-l2-eps":    func(c *Config) { c.PGD.Eps = map[string][]float64{"linf": {0.1}} },
		"pgd-step-size": func(c *Config) { c.PGD.StepSize = math.NaN() },
		"pgd-restarts":  func(c *Config) { c.PGD.Restarts = -2 },
	} {
		c := ok
		c.PGD.Eps = map[string][]float64{"linf": {0, 0.1}, "l2": {0, 1}}
		mut(&c)
		var ie *InputError
		if err := c.validate(); !errors.As(err, &ie) || ie.Flag != flag {
			t.Errorf("%s: validate() = %v", flag, err)
		}
	}
}

// TestFitConvertsOrNames: OOD sets are converted to the test set's shape; one that cannot be is
// an --ood error naming the set and both shapes.
func TestFitConvertsOrNames(t *testing.T) {
	test := &data.Dataset{Name: "t", N: 1, C: 1, H: 4, W: 4, Images: make([]uint8, 16), Labels: []int64{0}, Classes: []string{"a"}}
	rgb := &data.Dataset{Name: "rgb", N: 2, C: 3, H: 8, W: 8, Images: make([]uint8, 2*3*64), Labels: []int64{0, 0}, Classes: []string{"a"}}
	d, err := fit("rgb", rgb, test)
	if err != nil || d.C != 1 || d.H != 4 || d.W != 4 || d.N != 2 {
		t.Fatalf("fit rgb: %+v, %v", d, err)
	}
	if d, _ := fit("same", test, test); d != test {
		t.Error("a set of the right shape was copied")
	}
	two := &data.Dataset{Name: "two", N: 1, C: 2, H: 4, W: 4, Images: make([]uint8, 32), Labels: []int64{0}, Classes: []string{"a"}}
	_, err = fit("twochan", two, test)
	var ie *InputError
	if !errors.As(err, &ie) || ie.Flag != "ood" || !strings.Contains(err.Error(), "set twochan: its 2x4x4 images cannot be converted to the test set's 1x4x4") {
		t.Errorf("fit 2-channel: %v", err)
	}
}

func rows(model string, acc map[string]map[int][]float64, eps []float64) []eval.RobustnessRow {
	var out []eval.RobustnessRow
	for norm, bySteps := range acc {
		for steps, accs := range bySteps {
			for i, a := range accs {
				out = append(out, eval.RobustnessRow{Model: model, Norm: norm, Eps: eps[i], Steps: steps, Accuracy: a})
			}
		}
	}
	return out
}

func TestRobustnessChecks(t *testing.T) {
	eps := []float64{0, 0.01, 0.02}
	find := func(cs []eval.RobustnessCheck, name string) eval.RobustnessCheck {
		for _, c := range cs {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no check %s in %+v", name, cs)
		return eval.RobustnessCheck{}
	}
	good := robustnessChecks(rows("m", map[string]map[int][]float64{"linf": {10: {0.9, 0.5, 0.2}, 20: {0.9, 0.48, 0.2}}}, eps), 0.9, 500)
	for _, c := range good {
		if !c.Passed {
			t.Errorf("%s failed on good rows: %s", c.Name, c.Detail)
		}
	}
	if len(good) != 3 {
		t.Errorf("%d checks, want 3", len(good))
	}
	if d := find(good, "eps0_equals_clean").Detail; !strings.Contains(d, "0.9000 equals clean 0.9000") {
		t.Errorf("detail %q", d)
	}
	if d := find(good, "more_steps_no_help").Detail; !strings.Contains(d, "3 comparisons; largest gain from more steps +0.0000 (linf ε=0.02, 20 vs 10 steps)") {
		t.Errorf("detail %q", d)
	}
	bad := robustnessChecks(rows("m", map[string]map[int][]float64{"linf": {10: {0.88, 0.5, 0.6}, 20: {0.9, 0.55, 0.2}}}, eps), 0.9, 500)
	if c := find(bad, "eps0_equals_clean"); c.Passed || !strings.Contains(c.Detail, "differs by -10 images") {
		t.Errorf("ε=0 check on a wrong row: %+v", c)
	}
	if c := find(bad, "non_increasing_in_eps"); c.Passed || !strings.Contains(c.Detail, "rises from 0.5000 at ε=0.01 to 0.6000 at ε=0.02") {
		t.Errorf("monotonicity check: %+v", c)
	}
	if c := find(bad, "more_steps_no_help"); c.Passed || !strings.Contains(c.Detail, "0.5500 with 20 steps, 0.5000 with 10") {
		t.Errorf("steps check: %+v", c)
	}
	// One steps setting: nothing to compare, so no steps check is claimed.
	one := robustnessChecks(rows("m", map[string]map[int][]float64{"l2": {10: {0.9, 0.5, 0.2}}}, eps), 0.9, 500)
	for _, c := range one {
		if c.Name == "more_steps_no_help" {
			t.Errorf("steps check with one steps setting: %+v", c)
		}
	}
}

// fixture writes a small logits folder: a 10-class test set, one OOD set with tied scores, a
// gradnorm score and two PGD settings.
func fixture(t *testing.T) (string, *Index) {
	t.Helper()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	const n, c, nOut = 300, 10, 200
	logits := func(rows int, sharp float64) []float32 {
		v := make([]float32, rows*c)
		for i := range v {
			// Rounded to quarters, so many rows tie in both scores.
			v[i] = float32(math.Round(r.NormFloat64()*sharp*4) / 4)
		}
		return v
	}
	labels := make([]int64, n)
	in := logits(n, 2)
	for i := range labels {
		labels[i] = int64(r.IntN(c))
		if r.Float64() < 0.7 {
			in[i*c+int(labels[i])] += 3
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(npy.WriteFloat32(filepath.Join(dir, "test.npy"), in, n, c))
	must(npy.WriteInt64(filepath.Join(dir, "test_labels.npy"), labels, n))
	must(npy.WriteFloat32(filepath.Join(dir, "noise.npy"), logits(nOut, 1), nOut, c))
	g := func(k int) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = -math.Round(r.Float64()*10) / 10
		}
		return v
	}
	must(npy.WriteFloat64(filepath.Join(dir, "test_gradnorm.npy"), g(n), n))
	must(npy.WriteFloat64(filepath.Join(dir, "noise_gradnorm.npy"), g(nOut), nOut))
	must(npy.WriteFloat32(filepath.Join(dir, "pgd_clean.npy"), in[:100*c], 100, c))
	must(npy.WriteInt64(filepath.Join(dir, "pgd_labels.npy"), labels[:100], 100))
	must(npy.WriteFloat32(filepath.Join(dir, "pgd_linf_eps0_steps5.npy"), in[:100*c], 100, c))
	must(npy.WriteFloat32(filepath.Join(dir, "pgd_linf_eps0.1_steps5.npy"), logits(100, 1), 100, c))
	idx := &Index{Format: indexFormat, Title: "t", Model: "m", Scores: []string{"logqx", "maxprob", "gradnorm"},
		Config: map[string]any{"eval": map[string]any{"seed": 1.0}},
		Test: SetEntry{Name: "test", Dataset: "toy", N: n, C: c, Logits: "test.npy", Labels: "test_labels.npy",
			Scores: map[string]string{"gradnorm": "test_gradnorm.npy"}},
		OOD: []SetEntry{{Name: "noise", Dataset: "noise", N: nOut, C: c, Logits: "noise.npy", Scores: map[string]string{"gradnorm": "noise_gradnorm.npy"}}},
		PGD: &PGDEntry{N: 100, Labels: "pgd_labels.npy", Clean: "pgd_clean.npy", Attacks: []AttackEntry{
			{Norm: "linf", Eps: 0, Steps: 5, Logits: "pgd_linf_eps0_steps5.npy"},
			{Norm: "linf", Eps: 0.1, Steps: 5, Logits: "pgd_linf_eps0.1_steps5.npy"}}},
	}
	must(writeIndex(dir, idx))
	return dir, idx
}

// TestAnalyzeFromFiles: scoring a folder gives the numbers eval computes from the same arrays,
// for every suite, and Run writes them out.
func TestAnalyzeFromFiles(t *testing.T) {
	dir, _ := fixture(t)
	out := t.TempDir()
	r, err := Run(t.Context(), Config{Logits: dir, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := npy.Read(filepath.Join(dir, "test.npy"))
	v, _ := a.Float32s()
	in, _ := eval.NewLogits(v, 300, 10)
	b, _ := npy.Read(filepath.Join(dir, "noise.npy"))
	w, _ := b.Float32s()
	noise, _ := eval.NewLogits(w, 200, 10)
	la, _ := npy.Read(filepath.Join(dir, "test_labels.npy"))
	labels, _ := la.Int64s()
	cl, err := eval.Classify(in, labels)
	if err != nil {
		t.Fatal(err)
	}
	if *r.Classification != cl {
		t.Errorf("classification %+v, want %+v", *r.Classification, cl)
	}
	if r.Calibration == nil || len(r.Calibration.Bins) != 20 {
		t.Fatalf("calibration %+v", r.Calibration)
	}
	if len(r.OOD) != 3 {
		t.Fatalf("%d OOD rows, want logqx, maxprob and gradnorm", len(r.OOD))
	}
	for _, row := range r.OOD {
		var sIn, sOut []float64
		switch row.Score {
		case "gradnorm":
			x, _ := npy.Read(filepath.Join(dir, "test_gradnorm.npy"))
			y, _ := npy.Read(filepath.Join(dir, "noise_gradnorm.npy"))
			sIn, _ = x.Float64s()
			sOut, _ = y.Float64s()
		default:
			sIn, _ = eval.Scores(in, eval.Score(row.Score))
			sOut, _ = eval.Scores(noise, eval.Score(row.Score))
		}
		m, err := eval.OOD(sIn, sOut)
		if err != nil {
			t.Fatal(err)
		}
		if row.OODMetrics != m {
			t.Errorf("%s: %+v, want %+v", row.Score, row.OODMetrics, m)
		}
	}
	if len(r.Robustness) != 2 || r.Robustness[0].Accuracy != r.RobustnessClean["m"] {
		t.Errorf("robustness %+v, clean %v", r.Robustness, r.RobustnessClean)
	}
	for _, f := range []string{MetricsFile, ReportFile, "reliability.png", "robustness_linf.png", "hist_noise_gradnorm.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	// Only the asked suites run.
	r, err = Run(t.Context(), Config{Logits: dir, Out: t.TempDir(), Suites: []string{Calibration}, Scores: []string{"maxprob"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Classification != nil || r.Calibration == nil || r.OOD != nil || r.Robustness != nil {
		t.Errorf("calibration only: %+v", r)
	}
}

// TestAnalyzeRejectsDamagedFolders: every file a folder names is checked against the index and
// its partner, and the error names the file.
func TestAnalyzeRejectsDamagedFolders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string, idx *Index)
		want   string
	}{
		{"short labels", func(t *testing.T, dir string, _ *Index) {
			_ = npy.WriteInt64(filepath.Join(dir, "test_labels.npy"), make([]int64, 299), 299)
		}, "test.npy has 300 rows but labels " + "DIR/test_labels.npy has 299"},
		{"short logits", func(t *testing.T, dir string, _ *Index) {
			_ = npy.WriteFloat32(filepath.Join(dir, "noise.npy"), make([]float32, 1990), 199, 10)
		}, "DIR/noise.npy holds 199×10 logits, the index says 200×10"},
		{"wrong classes", func(t *testing.T, dir string, _ *Index) {
			_ = npy.WriteFloat32(filepath.Join(dir, "pgd_linf_eps0.1_steps5.npy"), make([]float32, 900), 100, 9)
		}, "DIR/pgd_linf_eps0.1_steps5.npy holds 100×9 logits, the index says 100×10"},
		{"label out of range", func(t *testing.T, dir string, _ *Index) {
			y := make([]int64, 300)
			y[7] = 10
			_ = npy.WriteInt64(filepath.Join(dir, "test_labels.npy"), y, 300)
		}, "label 10 at index 7 is out of range [0, 10)"},
		{"short scores", func(t *testing.T, dir string, _ *Index) {
			_ = npy.WriteFloat64(filepath.Join(dir, "noise_gradnorm.npy"), make([]float64, 20), 20)
		}, "DIR/noise_gradnorm.npy: 20 scores of shape [20] for 200 samples"},
		{"missing file", func(t *testing.T, dir string, _ *Index) { _ = os.Remove(filepath.Join(dir, "noise.npy")) }, "noise.npy"},
		{"escaping name", func(t *testing.T, dir string, idx *Index) {
			idx.OOD[0].Logits = "../noise.npy"
			_ = writeIndex(dir, idx)
		}, `file name "../noise.npy" must be a plain name inside the folder`},
		{"no index", func(t *testing.T, dir string, _ *Index) { _ = os.Remove(filepath.Join(dir, IndexFile)) }, "index.json is missing"},
		{"nan logits", func(t *testing.T, dir string, _ *Index) {
			v := make([]float32, 3000)
			v[17] = float32(math.NaN())
			_ = npy.WriteFloat32(filepath.Join(dir, "test.npy"), v, 300, 10)
		}, "test.npy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, idx := fixture(t)
			tc.damage(t, dir, idx)
			_, err := Run(t.Context(), Config{Logits: dir, Out: t.TempDir()})
			var ie *InputError
			if !errors.As(err, &ie) || ie.Flag != "logits" {
				t.Fatalf("error %v, want an --logits input error", err)
			}
			if want := strings.ReplaceAll(tc.want, "DIR", dir); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		})
	}
	// Asking for what an export lacks is an error too; by default it is left out.
	dir, idx := fixture(t)
	idx.PGD = nil
	idx.Test.Scores = nil
	if err := writeIndex(dir, idx); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), Config{Logits: dir, Out: t.TempDir(), Suites: []string{Robustness}}); err == nil || !strings.Contains(err.Error(), "--suites: robustness: the logits folder") {
		t.Errorf("robustness without PGD results: %v", err)
	}
	if _, err := Run(t.Context(), Config{Logits: dir, Out: t.TempDir(), Scores: []string{"gradnorm"}}); err == nil || !strings.Contains(err.Error(), "--scores: gradnorm") {
		t.Errorf("gradnorm without scores: %v", err)
	}
	if r, err := Run(t.Context(), Config{Logits: dir, Out: t.TempDir(), Scores: []string{"logqx"}}); err != nil || r.Robustness != nil {
		t.Errorf("default suites without PGD results: %v", err)
	}
}
