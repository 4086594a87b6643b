package eval

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// RobustnessRow is the accuracy of one model under one white-box attack setting.
type RobustnessRow struct {
	Model    string  `json:"model,omitempty"` // series label, e.g. "HDGE" or "JEM"
	Norm     string  `json:"norm"`            // "linf" or "l2"
	Eps      float64 `json:"eps"`             // perturbation budget in the model's input scale
	Steps    int     `json:"steps"`           // PGD steps
	Accuracy float64 `json:"accuracy"`
}

// DefaultRobustnessTol is the slack, in accuracy (a fraction), that CheckRobustness allows for the
// test-time noise and random starts of PGD before calling a result suspicious.
const DefaultRobustnessTol = 0.005

// NormTitle is how tables and plots name a PGD norm: L∞, L2, or the name itself.
func NormTitle(norm string) string {
	if n := map[string]string{"linf": "L∞", "l2": "L2"}[norm]; n != "" {
		return n
	}
	return norm
}

// NormRank puts L∞ first, as the paper does, then L2, then anything else.
func NormRank(n string) int {
	switch n {
	case "linf":
		return 0
	case "l2":
		return 1
	}
	return 2
}

func sortRobustness(rows []RobustnessRow) []RobustnessRow {
	s := slices.Clone(rows)
	slices.SortStableFunc(s, func(a, b RobustnessRow) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(NormRank(a.Norm), NormRank(b.Norm)), cmp.Compare(a.Norm, b.Norm),
			cmp.Compare(a.Steps, b.Steps), cmp.Compare(a.Eps, b.Eps))
	})
	return s
}

// CheckRobustness returns warnings for results that signal a broken attack or evaluation (gradient
// masking, a bug, a mislabelled row), none when all is well:
//   - accuracy, ε or steps out of range, or an unknown norm;
//   - accuracy at ε = 0 differing from the model's clean accuracy (clean maps model → accuracy; a
//     model missing from it is only compared with its other ε = 0 rows);
//   - accuracy rising with ε for fixed model, norm and steps;
//   - more PGD steps giving materially higher accuracy at the same ε (a stronger attack must not
//     help the model).
//
// tol ≤ 0 means DefaultRobustnessTol.
func CheckRobustness(rows []RobustnessRow, clean map[string]float64, tol float64) []string {
	if tol <= 0 {
		tol = DefaultRobustnessTol
	}
	var warn []string
	label := func(r RobustnessRow) string {
		if r.Model == "" {
			return fmt.Sprintf("%s ε=%g steps=%d", r.Norm, r.Eps, r.Steps)
		}
		return fmt.Sprintf("%s %s ε=%g steps=%d", r.Model, r.Norm, r.Eps, r.Steps)
	}
	zeroAcc := map[string]RobustnessRow{}
	for _, r := range rows {
		switch {
		case r.Norm != "linf" && r.Norm != "l2":
			warn = append(warn, fmt.Sprintf("%s: unknown norm %q (want linf or l2)", label(r), r.Norm))
		case !(r.Accuracy >= 0 && r.Accuracy <= 1):
			warn = append(warn, fmt.Sprintf("%s: accuracy %v is not in [0, 1]", label(r), r.Accuracy))
		case !(r.Eps >= 0) || math.IsInf(r.Eps, 0):
			warn = append(warn, fmt.Sprintf("%s: ε %v is not a finite non-negative number", label(r), r.Eps))
		case r.Steps < 0:
			warn = append(warn, fmt.Sprintf("%s: negative number of steps", label(r)))
		}
		if r.Eps != 0 {
			continue
		}
		if c, ok := clean[r.Model]; ok && math.Abs(r.Accuracy-c) > tol {
			warn = append(warn, fmt.Sprintf("%s: accuracy %.4f at ε=0 differs from clean accuracy %.4f", label(r), r.Accuracy, c))
		}
		if first, ok := zeroAcc[r.Model]; ok && math.Abs(first.Accuracy-r.Accuracy) > tol {
			warn = append(warn, fmt.Sprintf("%s: accuracy %.4f at ε=0 differs from %.4f for %s", label(r), r.Accuracy, first.Accuracy, label(first)))
		} else if !ok {
			zeroAcc[r.Model] = r
		}
	}
	s := sortRobustness(rows)
	for i := 1; i < len(s); i++ {
		a, b := s[i-1], s[i]
		if a.Model == b.Model && a.Norm == b.Norm && a.Steps == b.Steps && b.Eps > a.Eps && b.Accuracy > a.Accuracy+tol {
			warn = append(warn, fmt.Sprintf("%s: accuracy %.4f is higher than %.4f at the smaller ε=%g", label(b), b.Accuracy, a.Accuracy, a.Eps))
		}
	}
	// For each (model, norm, ε), accuracy should not rise with the number of steps.
	type key struct {
		model, norm string
		eps         float64
	}
	bySetting := map[key][]RobustnessRow{}
	var keys []key
	for _, r := range s {
		k := key{r.Model, r.Norm, r.Eps}
		if _, ok := bySetting[k]; !ok {
			keys = append(keys, k)
		}
		bySetting[k] = append(bySetting[k], r)
	}
	for _, k := range keys {
		g := bySetting[k] // sorted by steps
		for i := 1; i < len(g); i++ {
			for j := 0; j < i; j++ {
				if g[i].Steps > g[j].Steps && g[i].Accuracy > g[j].Accuracy+tol {
					warn = append(warn, fmt.Sprintf("%s: accuracy %.4f is higher than %.4f with fewer steps (%d)", label(g[i]), g[i].Accuracy, g[j].Accuracy, g[j].Steps))
					break
				}
			}
		}
	}
	return warn
}
