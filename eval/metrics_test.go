package eval

import (
	"math"
	"strings"
	"testing"
)

func TestLogitsMetrics(t *testing.T) {
	// Row 0: a tie between classes 0 and 2 goes to class 0, as torch.argmax does.
	// Row 1: huge logits that would overflow a naive exp.
	l, err := NewLogits([]float32{
		1, 0, 1,
		1000, -1000, 999,
		0, 0, 0,
	}, 3, 3)
	mustNoErr(t, err)
	labels := []int64{0, 2, 1}
	acc, err := Accuracy(l, labels)
	mustNoErr(t, err)
	if acc != 1.0/3 {
		t.Errorf("accuracy %v, want 1/3", acc)
	}
	// NLL: row 0: log(2e+1) - 1; row 1: log(1+e^-1) + 1 (relative to 999); row 2: log 3.
	e := math.E
	want := (math.Log(2*e+1) - 1 + math.Log1p(math.Exp(-1)) + 1 + math.Log(3)) / 3
	nll, err := NLL(l, labels)
	mustNoErr(t, err)
	if math.Abs(nll-want) > 1e-12 {
		t.Errorf("NLL %.15g, want %.15g", nll, want)
	}
	lq, err := LogQX(l)
	mustNoErr(t, err)
	if math.Abs(lq[1]-(1000+math.Log1p(math.Exp(-1)))) > 1e-12 || math.Abs(lq[2]-math.Log(3)) > 1e-12 {
		t.Errorf("logqx %v", lq)
	}
	mp, err := MaxProb(l)
	mustNoErr(t, err)
	if math.Abs(mp[0]-e/(2*e+1)) > 1e-12 || math.Abs(mp[2]-1.0/3) > 1e-12 {
		t.Errorf("maxprob %v", mp)
	}
	cl, err := Classify(l, labels)
	mustNoErr(t, err)
	if cl.Accuracy != acc || cl.NLL != nll || cl.N != 3 || cl.NumClasses != 3 {
		t.Errorf("classification %+v", cl)
	}
	if s, err := Scores(l, ScoreMaxProb); err != nil || s[2] != mp[2] {
		t.Errorf("Scores(maxprob) %v %v", s, err)
	}
	if _, err := Scores(l, "energy"); err == nil || !strings.Contains(err.Error(), "energy") {
		t.Errorf("unknown score: %v", err)
	}
}

func TestLogitsErrors(t *testing.T) {
	good := []float32{1, 2, 3, 4, 5, 6}
	for _, c := range []struct {
		name   string
		data   []float32
		n, c   int
		labels []int64
		source string
		want   string
	}{
		{"short", good[:5], 2, 3, []int64{0, 1}, "", "length 5 is not N×C = 2×3 = 6"},
		{"named file", good[:5], 2, 3, []int64{0, 1}, "test_logits.npy", "logits test_logits.npy: length 5"},
		{"zero classes", nil, 2, 0, nil, "", "N > 0 and C > 0"},
		{"label count", good, 2, 3, []int64{0}, "", "has 2 rows but labels has 1"},
		{"label range", good, 2, 3, []int64{0, 3}, "", "label 3 at index 1 is out of range [0, 3)"},
		{"negative label", good, 2, 3, []int64{-1, 0}, "", "label -1 at index 0"},
		{"nan", []float32{1, 2, 3, 4, float32(math.NaN()), 6}, 2, 3, []int64{0, 1}, "", "non-finite value NaN at row 1, class 1"},
	} {
		l := Logits{Data: c.data, N: c.n, C: c.c, Source: c.source}
		_, err := Accuracy(l, c.labels)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Accuracy error %v, want %q", c.name, err, c.want)
		}
		if _, err := Calibrate(l, c.labels, 20); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Calibrate error %v, want %q", c.name, err, c.want)
		}
	}
	l, err := LogitsFromArray(good, []int{2, 3}, "ood_svhn.npy")
	mustNoErr(t, err)
	if err := CheckLabels(l, []int64{0, 7}, "test_labels.npy"); err == nil ||
		!strings.Contains(err.Error(), "labels test_labels.npy: label 7 at index 1 is out of range [0, 3) for logits ood_svhn.npy") {
		t.Errorf("CheckLabels: %v", err)
	}
	if _, err := LogitsFromArray(good, []int{6}, "x.npy"); err == nil || !strings.Contains(err.Error(), "logits x.npy: shape [6] is not 2-D") {
		t.Errorf("1-D array: %v", err)
	}
	if _, err := LogitsFromArray(good, []int{3, 3}, "x.npy"); err == nil || !strings.Contains(err.Error(), "logits x.npy: length 6 is not N×C = 3×3 = 9") {
		t.Errorf("wrong shape: %v", err)
	}
	if _, err := LogitsFromFlat(good, 4); err == nil || !strings.Contains(err.Error(), "not a multiple") {
		t.Errorf("LogitsFromFlat: %v", err)
	}
	if l, err := LogitsFromFlat(good, 3); err != nil || l.N != 2 {
		t.Errorf("LogitsFromFlat: %v %v", l, err)
	}
}

func TestECEHandWorked(t *testing.T) {
	// M = 20 bins of width 0.05; a sample with confidence c falls in (lo, hi], 0 in the first bin.
	//   conf   correct  bin
	//   0.00   no       0  (0, .05]   (exactly 0 goes to the first bin)
	//   0.05   yes      0             (upper edge is inclusive)
	//   0.62   yes      12 (.60, .65]
	//   0.64   no       12
	//   0.95   yes      18 (.90, .95] (edge: not bin 19)
	//   1.00   yes      19 (.95, 1]
	//   0.951  no       19
	// Bin 0:  acc 1/2, conf (0+.05)/2 = .025,      gap .475
	// Bin 12: acc 1/2, conf (.62+.64)/2 = .63,     gap .13
	// Bin 18: acc 1,   conf .95,                   gap .05
	// Bin 19: acc 1/2, conf (1+.951)/2 = .9755,    gap .4755
	// ECE = (2·.475 + 2·.13 + 1·.05 + 2·.4755)/7 = (.95 + .26 + .05 + .951)/7 = 2.211/7 = .315857142857…
	// MCE = .4755.
	conf := []float64{0, 0.05, 0.62, 0.64, 0.95, 1, 0.951}
	correct := []bool{false, true, true, false, true, true, false}
	ece, mce, bins, err := ECE(conf, correct, 20)
	mustNoErr(t, err)
	if math.Abs(ece-2.211/7) > 1e-12 {
		t.Errorf("ECE %.15g, want %.15g", ece, 2.211/7)
	}
	if math.Abs(mce-0.4755) > 1e-12 {
		t.Errorf("MCE %v, want .4755", mce)
	}
	counts := map[int]int{0: 2, 12: 2, 18: 1, 19: 2}
	for i, b := range bins {
		if b.Count != counts[i] {
			t.Errorf("bin %d (%v, %v]: count %d, want %d", i, b.Lo, b.Hi, b.Count, counts[i])
		}
	}
	if bins[12].Lo != 0.6 || bins[12].Hi != 0.65 || math.Abs(bins[12].Confidence-0.63) > 1e-12 || bins[12].Accuracy != 0.5 {
		t.Errorf("bin 12 %+v", bins[12])
	}
	for _, bad := range []struct {
		conf    []float64
		correct []bool
		m       int
	}{{conf, correct[:3], 20}, {conf, correct, 0}, {[]float64{1.5}, []bool{true}, 20}, {nil, nil, 20}} {
		if _, _, _, err := ECE(bad.conf, bad.correct, bad.m); err == nil {
			t.Errorf("ECE accepted %v %v %d", bad.conf, bad.correct, bad.m)
		}
	}
}

func TestBinEdges(t *testing.T) {
	// Every edge k/20 must land in bin k-1, whatever the rounding of k/20·20.
	for k := 1; k <= 20; k++ {
		if got := binIndex(float64(k)/20, 20); got != k-1 {
			t.Errorf("confidence %v in bin %d, want %d", float64(k)/20, got, k-1)
		}
		if got := binIndex(math.Nextafter(float64(k)/20, 2), 20); k < 20 && got != k {
			t.Errorf("just above %v in bin %d, want %d", float64(k)/20, got, k)
		}
	}
	for _, m := range []int{3, 7, 10, 15} {
		for k := 1; k <= m; k++ {
			if got := binIndex(float64(k)/float64(m), m); got != k-1 {
				t.Errorf("M=%d: edge %d/%d in bin %d", m, k, m, got)
			}
		}
	}
}

func TestCalibrateBrierNLL(t *testing.T) {
	// Confidences sit mid-bin, away from edges, because the logits are rounded to float32.
	// Sample 0: p = (.22, .78), y = 1: correct, conf .78 (bin 15), Brier .22²+.22² = .0968, NLL -log .78.
	// Sample 1: p = (.84, .16), y = 1: wrong,   conf .84 (bin 16), Brier .84²+.84² = 1.4112, NLL -log .16.
	// ECE = (|1-.78| + |0-.84|)/2 = .53; MCE = .84; Brier = (.0968 + 1.4112)/2 = .754.
	l, err := NewLogits([]float32{0, float32(math.Log(.78 / .22)), float32(math.Log(.84 / .16)), 0}, 2, 2)
	mustNoErr(t, err)
	c, err := Calibrate(l, []int64{1, 1}, 20)
	mustNoErr(t, err)
	const tol = 1e-6 // the logits are rounded to float32
	for _, x := range []struct {
		what      string
		got, want float64
	}{
		{"ECE", c.ECE, 0.53}, {"MCE", c.MCE, 0.84}, {"Brier", c.Brier, 0.754},
		{"NLL", c.NLL, -(math.Log(0.78) + math.Log(0.16)) / 2}, {"accuracy", c.Accuracy, 0.5},
	} {
		if math.Abs(x.got-x.want) > tol {
			t.Errorf("%s = %v, want %v", x.what, x.got, x.want)
		}
	}
	if c.Bins[15].Count != 1 || c.Bins[16].Count != 1 || c.N != 2 {
		t.Errorf("bins %+v", c.Bins)
	}
}

func TestHistograms(t *testing.T) {
	h, err := NewHistograms(4, NamedScores{"in", []float64{0, 1, 2, 3, 4}}, NamedScores{"out", []float64{4, 4, 0.5}})
	mustNoErr(t, err)
	// Edges 0, 1, 2, 3, 4; left-closed bins, the last also closed on the right.
	if want := []float64{0, 1, 2, 3, 4}; !equalFloats(h.Edges, want) {
		t.Errorf("edges %v", h.Edges)
	}
	if got := h.Sets[0].Counts; !equalInts(got, []int{1, 1, 1, 2}) {
		t.Errorf("in counts %v", got)
	}
	if got := h.Sets[1].Counts; !equalInts(got, []int{1, 0, 0, 2}) {
		t.Errorf("out counts %v", got)
	}
	var area float64
	for i, d := range h.Density(1) {
		area += d * (h.Edges[i+1] - h.Edges[i])
	}
	if math.Abs(area-1) > 1e-12 {
		t.Errorf("density integrates to %v", area)
	}
	h, err = NewHistograms(3, NamedScores{"same", []float64{2, 2}})
	mustNoErr(t, err)
	if h.Edges[0] != 1.5 || h.Edges[3] != 2.5 || h.Sets[0].Counts[1] != 2 {
		t.Errorf("degenerate range: %+v", h)
	}
	h, err = NewHistogramsRange(2, 0, 1, NamedScores{"clamped", []float64{-5, 0.2, 0.7, 9}})
	mustNoErr(t, err)
	if !equalInts(h.Sets[0].Counts, []int{2, 2}) {
		t.Errorf("clamped counts %v", h.Sets[0].Counts)
	}
	for _, bad := range [][]NamedScores{nil, {{"empty", nil}}, {{"inf", []float64{math.Inf(1)}}}} {
		if _, err := NewHistograms(10, bad...); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCheckRobustness(t *testing.T) {
	good := []RobustnessRow{
		{"HDGE", "linf", 0, 10, 0.95}, {"HDGE", "linf", 0.01, 10, 0.60}, {"HDGE", "linf", 0.02, 10, 0.30},
		{"HDGE", "linf", 0, 40, 0.95}, {"HDGE", "linf", 0.01, 40, 0.55}, {"HDGE", "linf", 0.02, 40, 0.25},
		{"HDGE", "l2", 0, 20, 0.952}, {"HDGE", "l2", 0.5, 20, 0.50},
	}
	if w := CheckRobustness(good, map[string]float64{"HDGE": 0.95}, 0); len(w) != 0 {
		t.Errorf("good rows warned: %v", w)
	}
	for _, c := range []struct {
		name  string
		edit  func([]RobustnessRow) []RobustnessRow
		clean map[string]float64
		want  string
	}{
		{"eps 0 vs clean", func(r []RobustnessRow) []RobustnessRow { return r }, map[string]float64{"HDGE": 0.90}, "differs from clean accuracy 0.9000"},
		{"eps 0 rows disagree", func(r []RobustnessRow) []RobustnessRow { r[3].Accuracy = 0.93; return r }, nil, "at ε=0 differs from 0.9500"},
		{"rises with eps", func(r []RobustnessRow) []RobustnessRow { r[2].Accuracy = 0.7; return r }, nil, "higher than 0.6000 at the smaller ε=0.01"},
		{"more steps help", func(r []RobustnessRow) []RobustnessRow { r[4].Accuracy = 0.62; return r }, nil, "with fewer steps (10)"},
		{"bad norm", func(r []RobustnessRow) []RobustnessRow { r[7].Norm = "L2"; return r }, nil, `unknown norm "L2"`},
		{"bad accuracy", func(r []RobustnessRow) []RobustnessRow { r[1].Accuracy = 60; return r }, nil, "not in [0, 1]"},
	} {
		rows := c.edit(append([]RobustnessRow(nil), good...))
		w := CheckRobustness(rows, c.clean, 0)
		if !strings.Contains(strings.Join(w, "\n"), c.want) {
			t.Errorf("%s: warnings %q, want one containing %q", c.name, w, c.want)
		}
	}
	// Within tolerance: a 0.3-point rise from PGD noise is not flagged.
	rows := append([]RobustnessRow(nil), good...)
	rows[4].Accuracy = 0.603
	if w := CheckRobustness(rows, nil, 0); len(w) != 0 {
		t.Errorf("small noise flagged: %v", w)
	}
}
