package eval

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// The functions here reproduce scikit-learn (checked against 1.2.1) operation for operation, so
// numbers line up with published OOD tables: samples with tied scores form one threshold, exactly
// as sklearn's _binary_clf_curve groups them, which matters for saturated scores such as
// max-softmax = 1.0.

// binaryCurve is sklearn's _binary_clf_curve: cumulative false and true positives at each distinct
// score, scanning from the highest score down.
func binaryCurve(scores []float64, positive []bool) (fps, tps, thresholds []float64, err error) {
	if len(scores) != len(positive) {
		return nil, nil, nil, fmt.Errorf("scores have length %d but labels have length %d", len(scores), len(positive))
	}
	if len(scores) == 0 {
		return nil, nil, nil, fmt.Errorf("no scores")
	}
	for i, s := range scores {
		if math.IsNaN(s) {
			return nil, nil, nil, fmt.Errorf("score %d is NaN", i)
		}
	}
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	var tp float64
	for k, i := range idx {
		if positive[i] {
			tp++
		}
		if k == len(idx)-1 || scores[idx[k+1]] != scores[i] {
			tps = append(tps, tp)
			fps = append(fps, float64(k+1)-tp)
			thresholds = append(thresholds, scores[i])
		}
	}
	return fps, tps, thresholds, nil
}

// ROCCurve is sklearn.metrics.roc_curve (pos_label = true). With dropIntermediate, thresholds that
// lie on a straight segment of the curve are dropped, as sklearn's default does. The first
// threshold is thresholds[1]+1, as in sklearn 1.2 (later versions use +Inf).
func ROCCurve(scores []float64, positive []bool, dropIntermediate bool) (fpr, tpr, thresholds []float64, err error) {
	fps, tps, th, err := binaryCurve(scores, positive)
	if err != nil {
		return nil, nil, nil, err
	}
	if dropIntermediate && len(fps) > 2 {
		keep := 0
		for i := range fps {
			corner := i == 0 || i == len(fps)-1 ||
				fps[i+1]-2*fps[i]+fps[i-1] != 0 || tps[i+1]-2*tps[i]+tps[i-1] != 0
			if corner {
				fps[keep], tps[keep], th[keep] = fps[i], tps[i], th[i]
				keep++
			}
		}
		fps, tps, th = fps[:keep], tps[:keep], th[:keep]
	}
	nNeg, nPos := fps[len(fps)-1], tps[len(tps)-1]
	if nNeg <= 0 {
		return nil, nil, nil, fmt.Errorf("ROC curve needs negative samples; all %d are positive", len(scores))
	}
	if nPos <= 0 {
		return nil, nil, nil, fmt.Errorf("ROC curve needs positive samples; all %d are negative", len(scores))
	}
	fpr = make([]float64, len(fps)+1)
	tpr = make([]float64, len(tps)+1)
	thresholds = make([]float64, len(th)+1)
	thresholds[0] = th[0] + 1
	for i := range fps {
		fpr[i+1] = fps[i] / nNeg
		tpr[i+1] = tps[i] / nPos
		thresholds[i+1] = th[i]
	}
	return fpr, tpr, thresholds, nil
}

// ROCAUC is sklearn.metrics.roc_auc_score for binary labels: the trapezoidal area under ROCCurve.
func ROCAUC(scores []float64, positive []bool) (float64, error) {
	fpr, tpr, _, err := ROCCurve(scores, positive, true)
	if err != nil {
		return 0, err
	}
	var area float64
	for i := 1; i < len(fpr); i++ {
		area += (fpr[i] - fpr[i-1]) * (tpr[i] + tpr[i-1]) / 2
	}
	return area, nil
}

// AveragePrecision is sklearn.metrics.average_precision_score: Σ_k (R_k − R_{k−1}) P_k over the
// distinct thresholds, without interpolation.
func AveragePrecision(scores []float64, positive []bool) (float64, error) {
	fps, tps, _, err := binaryCurve(scores, positive)
	if err != nil {
		return 0, err
	}
	nPos := tps[len(tps)-1]
	if nPos <= 0 {
		// sklearn warns and sets recall to 1 everywhere, which makes AP 0; an error is more useful.
		return 0, fmt.Errorf("average precision needs positive samples; all %d are negative", len(scores))
	}
	var ap, prevRecall float64
	for i := range tps {
		recall := tps[i] / nPos
		precision := 0.0
		if ps := tps[i] + fps[i]; ps != 0 {
			precision = tps[i] / ps
		}
		ap += (recall - prevRecall) * precision
		prevRecall = recall
	}
	return ap, nil
}

// FPRAtTPR is the false-positive rate at the first point of sklearn's default roc_curve
// (drop_intermediate=True) whose true-positive rate reaches minTPR: fpr[np.searchsorted(tpr,
// minTPR)], the convention of the OOD literature's "FPR at 95% TPR". Tied scores cannot be split,
// so the TPR reached may exceed minTPR.
func FPRAtTPR(scores []float64, positive []bool, minTPR float64) (float64, error) {
	if !(minTPR >= 0 && minTPR <= 1) {
		return 0, fmt.Errorf("target TPR %v is not in [0, 1]", minTPR)
	}
	fpr, tpr, _, err := ROCCurve(scores, positive, true)
	if err != nil {
		return 0, err
	}
	i, _ := slices.BinarySearch(tpr, minTPR)
	if i == len(tpr) {
		// Only reachable through rounding, since tpr ends at exactly 1; numpy would index out of range.
		i = len(tpr) - 1
	}
	return fpr[i], nil
}

// OODMetrics summarises how well a score separates in-distribution from out-of-distribution data.
// In-distribution is the positive class and a higher score means "more in-distribution".
type OODMetrics struct {
	AUROC   float64 `json:"auroc"`    // roc_auc_score(in=1, score)
	AUPRIn  float64 `json:"aupr_in"`  // average_precision_score(in=1, score)
	AUPROut float64 `json:"aupr_out"` // average_precision_score(out=1, -score)
	FPR95   float64 `json:"fpr95"`    // FPR on OOD data at the first threshold with TPR ≥ 0.95 on in-distribution data
	NIn     int     `json:"n_in"`
	NOut    int     `json:"n_out"`
}

// OOD computes OODMetrics from the scores of the in-distribution and the OOD samples.
func OOD(in, out []float64) (OODMetrics, error) {
	if len(in) == 0 {
		return OODMetrics{}, fmt.Errorf("OOD metrics: no in-distribution scores")
	}
	if len(out) == 0 {
		return OODMetrics{}, fmt.Errorf("OOD metrics: no out-of-distribution scores")
	}
	for i, s := range in {
		if math.IsNaN(s) {
			return OODMetrics{}, fmt.Errorf("OOD metrics: in-distribution score %d is NaN", i)
		}
	}
	for i, s := range out {
		if math.IsNaN(s) {
			return OODMetrics{}, fmt.Errorf("OOD metrics: out-of-distribution score %d is NaN", i)
		}
	}
	scores := make([]float64, 0, len(in)+len(out))
	scores = append(append(scores, in...), out...)
	isIn := make([]bool, len(scores))
	isOut := make([]bool, len(scores))
	neg := make([]float64, len(scores))
	for i := range scores {
		isIn[i] = i < len(in)
		isOut[i] = !isIn[i]
		neg[i] = -scores[i]
	}
	m := OODMetrics{NIn: len(in), NOut: len(out)}
	var err error
	if m.AUROC, err = ROCAUC(scores, isIn); err != nil {
		return m, fmt.Errorf("AUROC: %w", err)
	}
	if m.AUPRIn, err = AveragePrecision(scores, isIn); err != nil {
		return m, fmt.Errorf("AUPR-in: %w", err)
	}
	if m.AUPROut, err = AveragePrecision(neg, isOut); err != nil {
		return m, fmt.Errorf("AUPR-out: %w", err)
	}
	if m.FPR95, err = FPRAtTPR(scores, isIn, 0.95); err != nil {
		return m, fmt.Errorf("FPR95: %w", err)
	}
	return m, nil
}
