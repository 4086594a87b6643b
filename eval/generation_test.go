package eval

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Goldens: testdata/gen_generation.py (numpy, scipy.linalg.sqrtm as pytorch-fid uses it).
type generationGoldens struct {
	Frechet []struct {
		Name           string
		N1, N2, D      int
		Feats1, Feats2 []float64
		FD             float64
		EpsUsed        bool `json:"eps_used"`
	}
	Inception []struct {
		Name               string
		N, Classes, Splits int
		Probs              []float64
		Mean, Std          float64
	}
}

func loadGenerationGoldens(t *testing.T) generationGoldens {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "generation.json"))
	if err != nil {
		t.Fatalf("%v (regenerate with /usr/bin/python3 testdata/gen_generation.py > testdata/generation.json)", err)
	}
	var g generationGoldens
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// close6 is agreement to 1e-6 relative, or 1e-9 absolute for a reference of zero.
func close6(got, want float64) bool {
	return math.Abs(got-want) <= 1e-6*math.Abs(want)+1e-9
}

func TestFrechetDistanceMatchesScipy(t *testing.T) {
	g := loadGenerationGoldens(t)
	if len(g.Frechet) == 0 {
		t.Fatal("no Fréchet goldens")
	}
	for _, c := range g.Frechet {
		fd, eps, err := FrechetDistance(toF32(c.Feats1), toF32(c.Feats2), c.N1, c.N2, c.D)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if !close6(fd, c.FD) {
			t.Errorf("%s: FD %.12g, scipy %.12g (relative %.2g)", c.Name, fd, c.FD, math.Abs(fd-c.FD)/math.Abs(c.FD))
		}
		t.Logf("%s: FD %.10g, scipy %.10g", c.Name, fd, c.FD)
		if eps != c.EpsUsed {
			t.Errorf("%s: eps fallback %v, reference %v", c.Name, eps, c.EpsUsed)
		}
	}
}

func TestInceptionScoreMatchesScipy(t *testing.T) {
	g := loadGenerationGoldens(t)
	for _, c := range g.Inception {
		m, s, err := InceptionScore(toF32(c.Probs), c.N, c.Classes, c.Splits)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if !close6(m, c.Mean) || !close6(s, c.Std) {
			t.Errorf("%s: IS %.12g ± %.12g, reference %.12g ± %.12g", c.Name, m, s, c.Mean, c.Std)
		}
		m64, _, _ := InceptionScore(c.Probs, c.N, c.Classes, c.Splits)
		if !close6(m64, c.Mean) {
			t.Errorf("%s: float64 IS %.12g, reference %.12g", c.Name, m64, c.Mean)
		}
	}
}

func TestGenerationBadInput(t *testing.T) {
	for _, c := range []struct {
		name  string
		probs []float32
		n, c  int
		split int
		want  string
	}{
		{"logits", []float32{2, 1, 0.5, 3}, 2, 2, 1, "softmax"},
		{"negative", []float32{1.5, -0.5, 0.5, 0.5}, 2, 2, 1, "probability"},
		{"nan", []float32{float32(math.NaN()), 1, 0.5, 0.5}, 2, 2, 1, "probability"},
		{"short", []float32{0.5, 0.5, 0.5}, 2, 2, 1, "values"},
		{"too many splits", []float32{0.5, 0.5, 0.5, 0.5}, 2, 2, 3, "splits"},
		{"zero splits", []float32{0.5, 0.5}, 1, 2, 0, "splits"},
	} {
		if _, _, err := InceptionScore(c.probs, c.n, c.c, c.split); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	if _, _, err := FrechetDistance([]float32{1, 2}, []float32{1, 2, 3, 4}, 1, 2, 2); err == nil {
		t.Error("a single sample was accepted")
	}
	if _, _, err := FrechetDistance([]float32{1, 2, 3, 4}, []float32{1, 2, 3}, 2, 2, 2); err == nil {
		t.Error("a short feature slice was accepted")
	}
	if _, _, err := FrechetDistance([]float32{1, float32(math.Inf(1)), 3, 4}, []float32{1, 2, 3, 4}, 2, 2, 2); err == nil {
		t.Error("an infinite feature was accepted")
	}
}

func TestGenerationLabels(t *testing.T) {
	is, fd := Generation{FeatureNet: FeatureNetInception}.Labels()
	if is != "IS" || fd != "FID" {
		t.Errorf("inception labels %q %q", is, fd)
	}
	g := Generation{FeatureNet: ClassifierFeatureNet("runs/hdge-s1"), ISMean: 3, FD: 12, N: 100}
	is, fd = g.Labels()
	if is != "IS (classifier)" || fd != "FD (classifier features)" || strings.Contains(fd, "FID") {
		t.Errorf("classifier labels %q %q", is, fd)
	}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"feature_net":"classifier:runs/hdge-s1","is_mean":3,"is_std":0,"fd":12,"n":100}`; string(b) != want {
		t.Errorf("json %s, want %s", b, want)
	}
}

// TestGenerationGoldensAreCurrent reruns the golden script when numpy and scipy are present, so
// that the checked-in file is what the script writes.
func TestGenerationGoldensAreCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python")
	}
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy, scipy").Run(); err != nil {
		t.Skip("Debian's python3-numpy and python3-scipy are not installed; `make deps` installs them")
	}
	out, err := exec.Command(py, filepath.Join("testdata", "gen_generation.py")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var fresh generationGoldens
	if err := json.Unmarshal(out, &fresh); err != nil {
		t.Fatal(err)
	}
	old := loadGenerationGoldens(t)
	for i, c := range fresh.Frechet {
		if !close6(c.FD, old.Frechet[i].FD) {
			t.Errorf("%s: the script now gives %v, the checked-in file %v", c.Name, c.FD, old.Frechet[i].FD)
		}
	}
}

// BenchmarkFrechetDistance2048 times the FID's maths at pool_3's width for two sets of n samples.
func BenchmarkFrechetDistance2048(b *testing.B) {
	const n, d = 2500, 2048
	f1, f2 := make([]float32, n*d), make([]float32, n*d)
	x := uint64(1)
	for i := range f1 {
		x = x*6364136223846793005 + 1442695040888963407
		f1[i] = float32(x>>40) / float32(1<<24)
		x = x*6364136223846793005 + 1442695040888963407
		f2[i] = float32(x>>40)/float32(1<<24) + 0.01
	}
	for b.Loop() {
		if _, _, err := FrechetDistance(f1, f2, n, n, d); err != nil {
			b.Fatal(err)
		}
	}
}
