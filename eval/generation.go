package eval

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Feature networks a generation section can name.
const (
	// FeatureNetInception is pytorch-fid's Inception-v3 (pool_3 features, 1008-way logits): the
	// network whose numbers may be called IS and FID.
	FeatureNetInception = "inception-v3-fid"
	classifierPrefix    = "classifier:"
)

// ClassifierFeatureNet names a run's own classifier as the feature network.
func ClassifierFeatureNet(run string) string { return classifierPrefix + run }

// DefaultISSplits is the 10 splits of the Inception Score as usually reported.
const DefaultISSplits = 10

// FIDEps is pytorch-fid's diagonal offset for a singular covariance product.
const FIDEps = 1e-6

// Generation is the metrics.json "generation" section: sample quality by the IS and Fréchet
// distance over n samples, as seen by FeatureNet. Only with FeatureNetInception are they the IS and
// FID of the literature; with a classifier's features they are comparable between runs of one
// dataset and nothing else, and Labels says so.
type Generation struct {
	FeatureNet string  `json:"feature_net"`
	ISMean     float64 `json:"is_mean"`
	ISStd      float64 `json:"is_std"`
	FD         float64 `json:"fd"`
	N          int     `json:"n"`
	// EpsUsed records that the covariance product was singular and FIDEps·I was added.
	EpsUsed bool `json:"fd_eps_used,omitempty"`
}

// Labels are the names to print beside ISMean and FD.
func (g Generation) Labels() (is, fd string) {
	if g.FeatureNet == FeatureNetInception {
		return "IS", "FID"
	}
	return "IS (classifier)", "FD (classifier features)"
}

// InceptionScore is exp(E_x KL(p(y|x) ‖ p(y))) over probs (n rows of classes probabilities, row
// major), computed in float64 on each of splits contiguous parts of n/splits rows (a remainder is
// left out, as the reference implementations do), with p(y) the part's mean. It returns the mean
// and the population standard deviation over the parts. Rows must be probabilities: finite,
// non-negative, summing to 1 within 1e-3 (logits are refused).
func InceptionScore[T float32 | float64](probs []T, n, classes, splits int) (mean, std float64, err error) {
	if n <= 0 || classes < 2 || splits <= 0 {
		return 0, 0, fmt.Errorf("inception score: need n > 0, classes >= 2, splits > 0; got n %d, classes %d, splits %d", n, classes, splits)
	}
	if len(probs) != n*classes {
		return 0, 0, fmt.Errorf("inception score: %d values for %d samples of %d classes", len(probs), n, classes)
	}
	if n < splits {
		return 0, 0, fmt.Errorf("inception score: %d samples cannot fill %d splits", n, splits)
	}
	for i := 0; i < n; i++ {
		sum := 0.0
		for _, v := range probs[i*classes : (i+1)*classes] {
			p := float64(v)
			if !(p >= 0) || math.IsInf(p, 0) {
				return 0, 0, fmt.Errorf("inception score: sample %d has probability %v", i, p)
			}
			sum += p
		}
		if math.Abs(sum-1) > 1e-3 {
			return 0, 0, fmt.Errorf("inception score: sample %d's probabilities sum to %v, not 1 (softmax the logits first)", i, sum)
		}
	}
	part := n / splits
	scores := make([]float64, splits)
	py := make([]float64, classes)
	for k := range scores {
		clear(py)
		rows := probs[k*part*classes : (k+1)*part*classes]
		for i, v := range rows {
			py[i%classes] += float64(v)
		}
		for c := range py {
			py[c] /= float64(part)
		}
		kl := 0.0
		for i, v := range rows {
			if p := float64(v); p > 0 {
				kl += p * math.Log(p/py[i%classes])
			}
		}
		scores[k] = math.Exp(kl / float64(part))
	}
	for _, v := range scores {
		mean += v
	}
	mean /= float64(splits)
	for _, v := range scores {
		std += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(std / float64(splits)), nil
}

// Moments are the mean and covariance (unbiased, as np.cov) of d-dimensional features: what
// pytorch-fid caches for a dataset.
type Moments struct {
	Mu  []float64
	Cov *mat.SymDense
}

// FeatureMoments computes the Moments of n rows of d features (row major), in float64.
func FeatureMoments[T float32 | float64](feats []T, n, d int) (Moments, error) {
	if n < 2 || d < 1 {
		return Moments{}, fmt.Errorf("feature moments: need at least 2 samples and 1 feature, got %d×%d", n, d)
	}
	if len(feats) != n*d {
		return Moments{}, fmt.Errorf("feature moments: %d values for %d samples of %d features", len(feats), n, d)
	}
	mu := make([]float64, d)
	for i, v := range feats {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return Moments{}, fmt.Errorf("feature moments: sample %d feature %d is %v", i/d, i%d, f)
		}
		mu[i%d] += f
	}
	for j := range mu {
		mu[j] /= float64(n)
	}
	xc := mat.NewDense(n, d, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			xc.Set(i, j, float64(feats[i*d+j])-mu[j])
		}
	}
	cov := mat.NewSymDense(d, nil)
	cov.SymRankK(cov, 1/float64(n-1), xc.T())
	return Moments{Mu: mu, Cov: cov}, nil
}

// FrechetDistance is ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between the Gaussians fitted to two
// feature sets (n1 and n2 rows of d features): the FID when the features are pytorch-fid's
// Inception pool_3. epsUsed reports pytorch-fid's fallback for a singular product (fewer samples
// than features, or a constant feature), where FIDEps·I is added to both covariances.
func FrechetDistance[T float32 | float64](feats1, feats2 []T, n1, n2, d int) (fd float64, epsUsed bool, err error) {
	m1, err := FeatureMoments(feats1, n1, d)
	if err != nil {
		return 0, false, fmt.Errorf("first set: %w", err)
	}
	m2, err := FeatureMoments(feats2, n2, d)
	if err != nil {
		return 0, false, fmt.Errorf("second set: %w", err)
	}
	return FrechetDistanceMoments(m1, m2)
}

// FrechetDistanceMoments is FrechetDistance from precomputed Moments. tr((Σ₁Σ₂)^½) is Σ √λᵢ
// over the eigenvalues of the symmetric LᵀΣ₂L, where Σ₁ = LLᵀ (Cholesky): LᵀΣ₂L is similar to
// Σ₁Σ₂, so it has the same eigenvalues, and one Cholesky, two triangular products and a
// values-only symmetric eigen-decomposition replace scipy's general sqrtm (no complex round-off).
func FrechetDistanceMoments(m1, m2 Moments) (fd float64, epsUsed bool, err error) {
	d := len(m1.Mu)
	if d == 0 || len(m2.Mu) != d || m1.Cov == nil || m2.Cov == nil || m1.Cov.SymmetricDim() != d || m2.Cov.SymmetricDim() != d {
		return 0, false, fmt.Errorf("frechet distance: moments of different or zero dimension")
	}
	tr, singular, err := traceSqrtProduct(m1.Cov, m2.Cov, 0)
	if err != nil {
		return 0, false, err
	}
	if singular {
		epsUsed = true
		if tr, _, err = traceSqrtProduct(m1.Cov, m2.Cov, FIDEps); err != nil {
			return 0, false, err
		}
	}
	for j := 0; j < d; j++ {
		diff := m1.Mu[j] - m2.Mu[j]
		fd += diff*diff + m1.Cov.At(j, j) + m2.Cov.At(j, j)
	}
	return fd - 2*tr, epsUsed, nil
}

// singularTol is the relative size below which an eigenvalue of the product counts as zero:
// covariances of rank below d show eigenvalues of order 1e-16 of the largest.
const singularTol = 1e-10

// traceSqrtProduct is tr(((Σ₁+εI)(Σ₂+εI))^½) and whether the product is singular (then tr is
// not computed when Σ₁+εI has no Cholesky factor).
func traceSqrtProduct(s1, s2 *mat.SymDense, eps float64) (tr float64, singular bool, err error) {
	d := s1.SymmetricDim()
	a, b := mat.NewSymDense(d, nil), mat.NewSymDense(d, nil)
	a.CopySym(s1)
	b.CopySym(s2)
	for j := 0; j < d; j++ {
		a.SetSym(j, j, a.At(j, j)+eps)
		b.SetSym(j, j, b.At(j, j)+eps)
	}
	var ch mat.Cholesky
	if !ch.Factorize(a) {
		if eps > 0 {
			return 0, true, fmt.Errorf("frechet distance: the first covariance plus %g·I is not positive definite", eps)
		}
		return 0, true, nil
	}
	var l mat.TriDense
	ch.LTo(&l)
	var tmp, k mat.Dense
	tmp.Mul(l.T(), b)
	k.Mul(&tmp, &l)
	ks := mat.NewSymDense(d, nil)
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			ks.SetSym(i, j, (k.At(i, j)+k.At(j, i))/2)
		}
	}
	var em mat.EigenSym
	if !em.Factorize(ks, false) {
		return 0, false, fmt.Errorf("frechet distance: eigen-decomposition of the covariance product failed")
	}
	lam := em.Values(nil)
	top := 0.0
	for _, v := range lam {
		top = math.Max(top, math.Abs(v))
	}
	for _, v := range lam {
		if v <= singularTol*top {
			singular = true
		}
		tr += math.Sqrt(math.Max(v, 0))
	}
	if top == 0 {
		singular = true
	}
	return tr, singular, nil
}
