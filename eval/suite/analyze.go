package suite

import (
	"cmp"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/eval"
)

// Analyze scores a logits folder: it needs the .npy files and the index only, never the model.
// suites nil means every suite the folder has data for; naming a suite whose data is missing is
// an error. scores nil means DefaultScores.
func Analyze(dir string, idx *Index, suites, scores []string, log *zap.Logger) (*eval.Report, error) {
	if log == nil {
		log = zap.NewNop()
	}
	explicit := suites != nil
	if suites == nil {
		suites = AllSuites
	}
	if scores == nil {
		scores = DefaultScores
	}
	r := eval.NewReport(idx.Title, idx.Model, idx.Config)
	if idx.Training != "" {
		if err := r.AddTraining(filepath.Join(dir, idx.Training)); err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("training curves left out: %v", err))
		} else if idx.TrainingSource != "" {
			r.Training.Source = idx.TrainingSource
		}
	}
	in, err := readLogits(dir, idx.Test.Logits, idx.Test.N, idx.Test.C)
	if err != nil {
		return nil, err
	}
	labels, err := readLabels(dir, idx.Test.Labels, in)
	if err != nil {
		return nil, err
	}
	inName := idx.Test.Dataset + " (in)"

	if slices.Contains(suites, Classify) || slices.Contains(suites, Calibration) {
		if err := r.AddClassification(idx.Test.Dataset+" test", in, labels); err != nil {
			return nil, err
		}
		if !slices.Contains(suites, Classify) {
			r.Classification = nil
		}
		if !slices.Contains(suites, Calibration) {
			r.Calibration = nil
			r.Figures = slices.DeleteFunc(r.Figures, func(f *eval.Figure) bool { return f.Section == "calibration" })
		}
		if r.Classification != nil {
			log.Info("classification", zap.Float64("accuracy", r.Classification.Accuracy), zap.Float64("nll", r.Classification.NLL), zap.Int("n", r.Classification.N))
		}
		if r.Calibration != nil {
			log.Info("calibration", zap.Float64("ece", r.Calibration.ECE), zap.Float64("mce", r.Calibration.MCE), zap.Float64("brier", r.Calibration.Brier))
		}
	}

	if slices.Contains(suites, OOD) {
		if len(idx.OOD) == 0 && explicit {
			return nil, inputErr("suites", "ood: the logits folder %s holds no OOD sets", dir)
		}
		for _, set := range idx.OOD {
			if err := addOOD(r, dir, idx, set, in, inName, scores, log); err != nil {
				return nil, err
			}
		}
	}

	if slices.Contains(suites, Robustness) {
		switch {
		case idx.PGD != nil:
			if err := addRobustness(r, dir, idx, log); err != nil {
				return nil, err
			}
		case explicit:
			return nil, inputErr("suites", "robustness: the logits folder %s holds no PGD results (it was exported without the robustness suite)", dir)
		}
	}
	return r, nil
}

func addOOD(r *eval.Report, dir string, idx *Index, set SetEntry, in eval.Logits, inName string, scores []string, log *zap.Logger) error {
	out, err := readLogits(dir, set.Logits, set.N, set.C)
	if err != nil {
		return err
	}
	if out.C != in.C {
		return fmt.Errorf("OOD set %s: %s has %d classes, the test logits %d", set.Name, out.Source, out.C, in.C)
	}
	if set.Labels != "" {
		// Labels are exported for scripts and live in the OOD set's own label space; scoring
		// ignores them, but a length mismatch means a damaged folder.
		if err := checkLabelCount(dir, set.Labels, out); err != nil {
			return err
		}
	}
	for _, score := range scores {
		var sIn, sOut []float64
		switch score {
		case string(eval.ScorePXSim):
			if idx.Queue == "" || idx.Contrast == nil {
				return inputErr("scores", "%s: the logits folder %s has no %s (export it with --scores ...,%s from an HDGE checkpoint)", score, dir, QueueFile, score)
			}
			q, err := readLogits(dir, idx.Queue, in.C, idx.Contrast.K)
			if err != nil {
				return err
			}
			if sIn, err = eval.ContrastiveScores(in, q.Data, idx.Contrast.K, idx.Contrast.Config()); err != nil {
				return err
			}
			if sOut, err = eval.ContrastiveScores(out, q.Data, idx.Contrast.K, idx.Contrast.Config()); err != nil {
				return err
			}
		case string(eval.ScoreLogQX), string(eval.ScoreMaxProb):
			if sIn, err = eval.Scores(in, eval.Score(score)); err != nil {
				return err
			}
			if sOut, err = eval.Scores(out, eval.Score(score)); err != nil {
				return err
			}
		default:
			fIn, fOut := idx.Test.Scores[score], set.Scores[score]
			if fIn == "" || fOut == "" {
				which := set.Name
				if fIn == "" {
					which = "the test set"
				}
				return inputErr("scores", "%s: the logits folder %s has no %s scores for %s (export them with --scores ...,%s)", score, dir, score, which, score)
			}
			if sIn, err = readScores(dir, fIn, in.N); err != nil {
				return err
			}
			if sOut, err = readScores(dir, fOut, out.N); err != nil {
				return err
			}
		}
		if err := r.AddOOD(inName, set.Name, score, sIn, sOut); err != nil {
			return err
		}
		m := r.OOD[len(r.OOD)-1]
		log.Info("ood", zap.String("set", set.Name), zap.String("score", score), zap.Float64("auroc", m.AUROC),
			zap.Float64("aupr_in", m.AUPRIn), zap.Float64("aupr_out", m.AUPROut), zap.Float64("fpr95", m.FPR95))
	}
	return nil
}

func addRobustness(r *eval.Report, dir string, idx *Index, log *zap.Logger) error {
	p := idx.PGD
	if len(p.Attacks) == 0 {
		return fmt.Errorf("%s: the PGD entry lists no attacks", filepath.Join(dir, IndexFile))
	}
	clean, err := readLogits(dir, p.Clean, p.N, idx.Test.C)
	if err != nil {
		return err
	}
	labels, err := readLabels(dir, p.Labels, clean)
	if err != nil {
		return err
	}
	cleanAcc, err := eval.Accuracy(clean, labels)
	if err != nil {
		return err
	}
	var rows []eval.RobustnessRow
	for _, a := range p.Attacks {
		l, err := readLogits(dir, a.Logits, p.N, idx.Test.C)
		if err != nil {
			return err
		}
		acc, err := eval.Accuracy(l, labels)
		if err != nil {
			return err
		}
		rows = append(rows, eval.RobustnessRow{Model: idx.Model, Norm: a.Norm, Eps: a.Eps, Steps: a.Steps, Accuracy: acc})
		log.Info("pgd", zap.String("norm", a.Norm), zap.Float64("eps", a.Eps), zap.Int("steps", a.Steps), zap.Float64("accuracy", acc))
	}
	r.RobustnessClean = map[string]float64{idx.Model: cleanAcc}
	r.RobustnessChecks = robustnessChecks(rows, cleanAcc, p.N)
	for _, c := range r.RobustnessChecks {
		if c.Passed {
			log.Info("pgd sanity check passed", zap.String("check", c.Name), zap.String("detail", c.Detail))
		} else {
			log.Warn("pgd sanity check FAILED", zap.String("check", c.Name), zap.String("detail", c.Detail))
		}
	}
	return r.AddRobustness(rows)
}

// robustnessChecks are the three sanity checks, with eval.DefaultRobustnessTol of slack
// for the random starts: accuracy at ε = 0 equals the clean accuracy of the attacked images,
// accuracy never rises with ε, and more steps never help the model materially.
func robustnessChecks(rows []eval.RobustnessRow, clean float64, n int) []eval.RobustnessCheck {
	tol := eval.DefaultRobustnessTol
	type series struct {
		norm  string
		steps int
	}
	bySeries := map[series][]eval.RobustnessRow{}
	var order []series
	for _, r := range rows {
		k := series{r.Norm, r.Steps}
		if _, ok := bySeries[k]; !ok {
			order = append(order, k)
		}
		bySeries[k] = append(bySeries[k], r)
	}
	var checks []eval.RobustnessCheck

	var zeroDetails []string
	zeroOK, anyZero := true, false
	for _, k := range order {
		for _, r := range bySeries[k] {
			if r.Eps != 0 {
				continue
			}
			anyZero = true
			diff := math.Round((r.Accuracy - clean) * float64(n))
			ok := math.Abs(r.Accuracy-clean) <= tol
			zeroOK = zeroOK && ok
			rel := "equals"
			if diff != 0 {
				rel = fmt.Sprintf("differs by %+.0f images from", diff)
			}
			zeroDetails = append(zeroDetails, fmt.Sprintf("%s %d steps: %.4f %s clean %.4f", k.norm, k.steps, r.Accuracy, rel, clean))
		}
	}
	if anyZero {
		checks = append(checks, eval.RobustnessCheck{Name: "eps0_equals_clean", Passed: zeroOK,
			Detail: fmt.Sprintf("on the %d attacked images without test-time noise: %s", n, strings.Join(zeroDetails, "; "))})
	}

	var epsDetails []string
	epsOK := true
	for _, k := range order {
		rs := slices.Clone(bySeries[k])
		slices.SortStableFunc(rs, func(a, b eval.RobustnessRow) int { return cmp.Compare(a.Eps, b.Eps) })
		worst := 0.0
		for i := 1; i < len(rs); i++ {
			worst = max(worst, rs[i].Accuracy-rs[i-1].Accuracy)
			if rs[i].Accuracy > rs[i-1].Accuracy+tol {
				epsOK = false
				epsDetails = append(epsDetails, fmt.Sprintf("%s %d steps: accuracy rises from %.4f at ε=%.4g to %.4f at ε=%.4g", k.norm, k.steps, rs[i-1].Accuracy, rs[i-1].Eps, rs[i].Accuracy, rs[i].Eps))
			}
		}
		if len(rs) > 1 && worst <= tol {
			epsDetails = append(epsDetails, fmt.Sprintf("%s %d steps: %.4f at ε=%.4g down to %.4f at ε=%.4g", k.norm, k.steps, rs[0].Accuracy, rs[0].Eps, rs[len(rs)-1].Accuracy, rs[len(rs)-1].Eps))
		}
	}
	if len(epsDetails) > 0 {
		checks = append(checks, eval.RobustnessCheck{Name: "non_increasing_in_eps", Passed: epsOK, Detail: strings.Join(epsDetails, "; ")})
	}

	type setting struct {
		norm string
		eps  float64
	}
	bySetting := map[setting][]eval.RobustnessRow{}
	var settings []setting
	for _, r := range rows {
		k := setting{r.Norm, r.Eps}
		if _, ok := bySetting[k]; !ok {
			settings = append(settings, k)
		}
		bySetting[k] = append(bySetting[k], r)
	}
	var stepDetails []string
	stepsOK, compared := true, 0
	worstGain, worstAt := math.Inf(-1), ""
	for _, k := range settings {
		rs := slices.Clone(bySetting[k])
		slices.SortStableFunc(rs, func(a, b eval.RobustnessRow) int { return cmp.Compare(a.Steps, b.Steps) })
		for i := 1; i < len(rs); i++ {
			for j := range i {
				if rs[i].Steps == rs[j].Steps {
					continue
				}
				compared++
				gain := rs[i].Accuracy - rs[j].Accuracy
				// At ε = 0 the attack cannot move the image, so the gain there says nothing.
				if k.eps > 0 && gain > worstGain {
					worstGain, worstAt = gain, fmt.Sprintf("%s ε=%.4g, %d vs %d steps", k.norm, k.eps, rs[i].Steps, rs[j].Steps)
				}
				if gain > tol {
					stepsOK = false
					stepDetails = append(stepDetails, fmt.Sprintf("%s ε=%.4g: %.4f with %d steps, %.4f with %d", k.norm, k.eps, rs[i].Accuracy, rs[i].Steps, rs[j].Accuracy, rs[j].Steps))
				}
			}
		}
	}
	if compared > 0 {
		if stepsOK && worstAt != "" {
			stepDetails = append(stepDetails, fmt.Sprintf("%d comparisons; largest gain from more steps %+.4f (%s)", compared, worstGain, worstAt))
		} else if stepsOK {
			stepDetails = append(stepDetails, fmt.Sprintf("%d comparisons, all at ε = 0", compared))
		}
		checks = append(checks, eval.RobustnessCheck{Name: "more_steps_no_help", Passed: stepsOK, Detail: strings.Join(stepDetails, "; ")})
	}
	return checks
}
