package nn

import (
	"fmt"
	"math"

	"github.com/hdge-torch/hdge-torch/torch"
)

// The contrastive losses live beside the layers because they are the same kind of thing: maths
// over torch tensors that an objective of trainer/ composes, with no state of their own. They
// take the features of every view of a batch as one tensor [B, V, d], the layout a model's
// Features on the concatenated views gives after a reshape, and return a scalar.
//
// Both return an error for inputs whose shapes or settings are wrong (the caller's mistake, named
// here); failures inside libtorch stay on s as for any op.

// SupConConfig holds the temperatures of the supervised contrastive loss (Khosla et al. 2020).
type SupConConfig struct {
	Temperature     float64 // τ in the logits a·p/τ; SupCon's CIFAR recipe uses 0.1
	BaseTemperature float64 // the loss is scaled by τ/τ_base; 0.07 in SupCon's code
}

// DefaultSupCon is SupCon's CIFAR recipe: τ = 0.1, τ_base = 0.07.
func DefaultSupCon() SupConConfig { return SupConConfig{Temperature: 0.1, BaseTemperature: 0.07} }

// Validate names a temperature that is not a positive finite number.
func (c SupConConfig) Validate() error {
	for _, t := range []struct {
		name string
		v    float64
	}{{"temperature", c.Temperature}, {"base temperature", c.BaseTemperature}} {
		if !(t.v > 0) || math.IsInf(t.v, 0) {
			return fmt.Errorf("supcon %s %g, want > 0", t.name, t.v)
		}
	}
	return nil
}

// checkViews validates features [B, V, d] with V >= minViews, and labels [B] (int64) when given.
func checkViews(what string, features, labels *torch.Tensor, minViews int) (b, v int64, err error) {
	if features == nil {
		return 0, 0, fmt.Errorf("%s: no features", what)
	}
	sh := features.Shape()
	if len(sh) != 3 || sh[0] < 1 || sh[1] < int64(minViews) || sh[2] < 1 {
		return 0, 0, fmt.Errorf("%s: features have shape %v, want [batch, views >= %d, dim]", what, sh, minViews)
	}
	if dt := features.DType(); dt != torch.Float32 && dt != torch.Float64 {
		return 0, 0, fmt.Errorf("%s: features are %v, want a floating type", what, dt)
	}
	if labels != nil {
		if ls := labels.Shape(); len(ls) != 1 || ls[0] != sh[0] {
			return 0, 0, fmt.Errorf("%s: labels have shape %v for %d samples, want [%d]", what, ls, sh[0], sh[0])
		}
		if labels.DType() != torch.Int64 {
			return 0, 0, fmt.Errorf("%s: labels are %v, want int64", what, labels.DType())
		}
	}
	return sh[0], sh[1], nil
}

// flattenViews stacks the views view-major: row v·B + i is view v of sample i, as
// torch.cat(torch.unbind(features, 1), 0).
func flattenViews(s *torch.Scope, features *torch.Tensor, b, v int64) *torch.Tensor {
	return s.Reshape(s.Transpose(features, 0, 1), v*b, features.Size(2))
}

// eyeBool is the n×m boolean matrix true at (i, i), built on dev from two aranges so nothing is
// copied from the host.
func eyeBool(s *torch.Scope, n, m int64, dev torch.Device) *torch.Tensor {
	r := s.Unsqueeze(s.Arange(n, torch.Int64, dev), 1)
	c := s.Unsqueeze(s.Arange(m, torch.Int64, dev), 0)
	return s.Eq(r, c)
}

// SupConLoss is the supervised contrastive loss in its "all" contrast mode. features is
// [B, V, d], each row L2-normalised; labels is [B] int64, or nil for the unsupervised case where
// only the other views of the same image are positives (SimCLR with SupCon's scaling).
//
// Every one of the N = V·B view-rows is an anchor i. Its positives P(i) are the other rows with
// i's label (the anchor itself excluded, the other views of the same image included); its
// contrasts A(i) are all rows but itself. With logits z_ik = a_i·a_k/τ, shifted by their row
// maximum (detached; it cancels in the log-softmax and only keeps exp from overflowing),
//
//	ℓ_i = -(τ/τ_base) · 1/|P(i)| · Σ_{p∈P(i)} [ z_ip - log Σ_{k∈A(i)} exp z_ik ],   loss = mean_i ℓ_i.
//
// An anchor without positives, which needs V = 1 and a label seen once in the batch, gives 0/0 in
// the paper's formula; here its ℓ_i is 0 (the division is by max(|P(i)|, 1)) and it still counts
// in the mean over N, as SupContrast's losses.py does since its fix for that case. With V >= 2
// every anchor has a positive.
func SupConLoss(s *torch.Scope, features, labels *torch.Tensor, cfg SupConConfig) (*torch.Tensor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b, v, err := checkViews("supcon", features, labels, 1)
	if err != nil {
		return nil, err
	}
	dt, dev := features.DType(), features.Device()
	n := v * b
	c := s.Child()
	a := flattenViews(c, features, b, v)
	logits := c.DivScalar(c.Matmul(a, c.Transpose(a, 0, 1)), cfg.Temperature)
	rowMax, _ := c.Max(logits, 1, true)
	logits = c.Sub(logits, c.Detach(rowMax))
	// same[i][k] = 1 when rows i and k are positives of each other (self included for now).
	var same *torch.Tensor
	if labels == nil {
		same = c.ToDType(eyeBool(c, b, b, dev), dt)
	} else {
		same = c.ToDType(c.Eq(c.Unsqueeze(labels, 1), c.Unsqueeze(labels, 0)), dt)
	}
	rows := make([]*torch.Tensor, v)
	for i := range rows {
		rows[i] = same
	}
	row := c.Cat(rows, 1) // B × N
	for i := range rows {
		rows[i] = row
	}
	notSelf := c.AddScalar(c.Neg(c.ToDType(eyeBool(c, n, n, dev), dt)), 1)
	pos := c.Mul(c.Cat(rows, 0), notSelf) // N × N
	denom := c.Log(c.Sum(c.Mul(c.Exp(logits), notSelf), []int{1}, true))
	logProb := c.Sub(logits, denom)
	nPos := c.Clamp(c.Sum(pos, []int{1}, false), 1, math.Inf(1))
	meanLogProbPos := c.Div(c.Sum(c.Mul(pos, logProb), []int{1}, false), nPos)
	loss := c.MulScalar(c.Mean(meanLogProbPos, nil, false), -cfg.Temperature/cfg.BaseTemperature)
	s.Merge(c, loss)
	return loss, nil
}

// NTXentLoss is SimCLR's normalized temperature-scaled cross-entropy. features is [B, 2, d], each
// row L2-normalised. Each of the 2B rows is an anchor whose positive is the other view of its
// image and whose 2B-2 negatives are every other row:
//
//	ℓ_i = -log [ exp(a_i·a_p(i)/τ) / Σ_{k≠i} exp(a_i·a_k/τ) ],   loss = mean over the 2B anchors.
//
// It equals SupConLoss with nil labels, two views and τ_base = τ.
func NTXentLoss(s *torch.Scope, features *torch.Tensor, temperature float64) (*torch.Tensor, error) {
	if !(temperature > 0) || math.IsInf(temperature, 0) {
		return nil, fmt.Errorf("nt-xent temperature %g, want > 0", temperature)
	}
	b, v, err := checkViews("nt-xent", features, nil, 2)
	if err != nil {
		return nil, err
	}
	if v != 2 {
		return nil, fmt.Errorf("nt-xent: features have %d views, want 2", v)
	}
	if b < 2 {
		return nil, fmt.Errorf("nt-xent: a batch of %d has no negatives, want at least 2 images", b)
	}
	dt, dev := features.DType(), features.Device()
	c := s.Child()
	a := flattenViews(c, features, b, 2)
	logits := c.DivScalar(c.Matmul(a, c.Transpose(a, 0, 1)), temperature)
	// The anchor itself is no contrast: its logit becomes -inf, whose softmax weight and gradient
	// are exactly 0.
	self := eyeBool(c, 2*b, 2*b, dev)
	logits = c.Where(self, c.Full(nil, math.Inf(-1), dt, dev), logits)
	target := make([]int64, 2*b)
	for i := range b {
		target[i], target[b+i] = b+i, i
	}
	loss := c.CrossEntropy(logits, c.To(c.FromInt64(target, 2*b), dev), 0, torch.Mean)
	s.Merge(c, loss)
	return loss, nil
}
