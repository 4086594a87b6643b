package compare

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/hdge-torch/hdge-torch/eval"
)

// Stat is a metric over seeds: the mean, the sample standard deviation (n−1; zero for one seed)
// and how many seeds had the metric.
type Stat struct {
	Mean, Std float64
	N         int
}

// MeanStd summarises values over seeds, ignoring NaNs (a metric a seed could not compute).
func MeanStd(xs []float64) Stat {
	var s Stat
	var sum float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			sum += x
			s.N++
		}
	}
	if s.N == 0 {
		return Stat{Mean: math.NaN(), Std: math.NaN()}
	}
	s.Mean = sum / float64(s.N)
	if s.N > 1 {
		var ss float64
		for _, x := range xs {
			if !math.IsNaN(x) {
				ss += (x - s.Mean) * (x - s.Mean)
			}
		}
		s.Std = math.Sqrt(ss / float64(s.N-1))
	}
	return s
}

// Metric is one row of the summary table.
type Metric struct {
	Key     string // stable, for tests and scripts: "accuracy", "ood/SVHN/logqx", "pgd/linf/0.0314/20"
	Label   string
	Percent bool
	// Lower is better (NLL, ECE, Brier); the table marks the best run either way.
	Lower bool
	Cells []Cell // one per run, in the runs' order
}

// Cell is one run's value of a metric; Missing when none of its seeds has it.
type Cell struct {
	Stat
	Missing bool
	Best    bool
}

type metricValue struct {
	key, label     string
	percent, lower bool
	value          float64
}

// values lists the metrics one evaluation reports, in table order.
func values(e *Eval) []metricValue {
	m := e.Metrics
	var v []metricValue
	if c := m.Classification; c != nil {
		v = append(v, metricValue{"accuracy", "accuracy", true, false, c.Accuracy}, metricValue{"nll", "NLL", false, true, c.NLL})
	}
	if c := m.Calibration; c != nil {
		v = append(v, metricValue{"ece", fmt.Sprintf("ECE (%d bins)", c.NumBins), true, true, c.ECE}, metricValue{"brier", "Brier", false, true, c.Brier})
	}
	for _, set := range sortedKeys(m.OOD) {
		for _, score := range sortedKeys(m.OOD[set]) {
			v = append(v, metricValue{"ood/" + set + "/" + score, fmt.Sprintf("AUROC %s, %s", set, scoreLabel(score)), false, false, m.OOD[set][score].AUROC})
		}
	}
	rows := slices.Clone(m.Robustness)
	slices.SortStableFunc(rows, func(a, b eval.RobustnessRow) int {
		return cmp.Or(cmp.Compare(eval.NormRank(a.Norm), eval.NormRank(b.Norm)), cmp.Compare(a.Steps, b.Steps), cmp.Compare(a.Eps, b.Eps))
	})
	for _, r := range rows {
		if r.Eps == 0 {
			continue // the clean accuracy of the attacked subset, not a robustness figure
		}
		v = append(v, metricValue{fmt.Sprintf("pgd/%s/%g/%d", r.Norm, r.Eps, r.Steps),
			fmt.Sprintf("PGD-%d %s ε=%s accuracy", r.Steps, eval.NormTitle(r.Norm), epsLabel(r.Eps)), true, false, r.Accuracy})
	}
	return v
}

// Summarize builds the summary table: every metric any run reports, mean ± std over each run's
// seeds, with the best run of each row marked.
func Summarize(runs []*Run) []Metric {
	var table []Metric
	at := map[string]int{}
	per := map[string][][]float64{}
	for ri, r := range runs {
		for _, e := range r.Present() {
			for _, mv := range values(e) {
				i, ok := at[mv.key]
				if !ok {
					i = len(table)
					at[mv.key] = i
					table = append(table, Metric{Key: mv.key, Label: mv.label, Percent: mv.percent, Lower: mv.lower})
					per[mv.key] = make([][]float64, len(runs))
				}
				per[mv.key][ri] = append(per[mv.key][ri], mv.value)
			}
		}
	}
	for i := range table {
		m := &table[i]
		best := -1
		for ri := range runs {
			xs := per[m.Key][ri]
			c := Cell{Missing: len(xs) == 0}
			if !c.Missing {
				c.Stat = MeanStd(xs)
				if !math.IsNaN(c.Mean) && (best < 0 || (m.Lower && c.Mean < m.Cells[best].Mean) || (!m.Lower && c.Mean > m.Cells[best].Mean)) {
					best = ri
				}
			}
			m.Cells = append(m.Cells, c)
		}
		if best >= 0 && len(runs) > 1 {
			m.Cells[best].Best = true
		}
	}
	return table
}

// PoolCalibration merges the reliability bins of several seeds: counts add, and accuracy and
// confidence are count-weighted, so the pooled diagram is that of all seeds' test samples together.
// Seeds binned differently from the first are left out.
func PoolCalibration(evals []*Eval) (eval.Calibration, int, bool) {
	var pool eval.Calibration
	used := 0
	for _, e := range evals {
		c := e.Metrics.Calibration
		if c == nil || len(c.Bins) == 0 {
			continue
		}
		if used == 0 {
			pool.Bins = make([]eval.CalibrationBin, len(c.Bins))
			for i, b := range c.Bins {
				pool.Bins[i] = eval.CalibrationBin{Lo: b.Lo, Hi: b.Hi}
			}
		} else if len(c.Bins) != len(pool.Bins) {
			continue
		}
		for i, b := range c.Bins {
			p := &pool.Bins[i]
			p.Accuracy += b.Accuracy * float64(b.Count)
			p.Confidence += b.Confidence * float64(b.Count)
			p.Count += b.Count
		}
		pool.N += c.N
		used++
	}
	if used == 0 {
		return pool, 0, false
	}
	for i := range pool.Bins {
		p := &pool.Bins[i]
		if p.Count > 0 {
			p.Accuracy /= float64(p.Count)
			p.Confidence /= float64(p.Count)
			w := float64(p.Count) / float64(pool.N)
			pool.ECE += w * math.Abs(p.Accuracy-p.Confidence)
			pool.Accuracy += w * p.Accuracy
		}
	}
	return pool, used, true
}

// Curve is a run's mean ± std of y over seeds at shared x.
type Curve struct {
	X, Mean, Std []float64
	Seeds        int
}

// Aggregate averages per-seed curves given as x→y maps over the x values every seed has, so a
// seed that stopped early shortens the band instead of biasing its tail.
func Aggregate(seeds []map[float64]float64) Curve {
	if len(seeds) == 0 {
		return Curve{}
	}
	var xs []float64
	for x := range seeds[0] {
		all := true
		for _, s := range seeds[1:] {
			if _, ok := s[x]; !ok {
				all = false
				break
			}
		}
		if all {
			xs = append(xs, x)
		}
	}
	slices.Sort(xs)
	c := Curve{X: xs, Seeds: len(seeds)}
	ys := make([]float64, len(seeds))
	for _, x := range xs {
		for i, s := range seeds {
			ys[i] = s[x]
		}
		st := MeanStd(ys)
		c.Mean, c.Std = append(c.Mean, st.Mean), append(c.Std, st.Std)
	}
	return c
}

// rocGrid is the false-positive rates at which seeds' ROC curves are averaged (vertical averaging).
var rocGrid = func() []float64 {
	g := make([]float64, 201)
	for i := range g {
		g[i] = float64(i) / 200
	}
	return g
}()

// ROCAt interpolates a ROC curve's true-positive rate at each grid FPR, taking the highest TPR
// reached at an FPR where the curve steps vertically.
func ROCAt(fpr, tpr []float64) map[float64]float64 {
	out := make(map[float64]float64, len(rocGrid))
	j := 0
	for _, g := range rocGrid {
		for j+1 < len(fpr) && fpr[j+1] <= g {
			j++
		}
		v := tpr[j]
		if j+1 < len(fpr) && fpr[j+1] > fpr[j] && g > fpr[j] {
			v += (tpr[j+1] - tpr[j]) * (g - fpr[j]) / (fpr[j+1] - fpr[j])
		}
		out[g] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func scoreLabel(s string) string {
	return cmp.Or(map[string]string{"logqx": "log q(x)", "maxprob": "max p(y|x)"}[s], s)
}

// epsLabel writes budgets that are whole grey levels as k/255, as eval's report does.
func epsLabel(v float64) string {
	if k := math.Round(v * 255); v > 0 && v < 1 && math.Abs(v*255-k) < 1e-9 {
		return fmt.Sprintf("%.0f/255", k)
	}
	return fmt.Sprintf("%g", v)
}
