package eval

import (
	"fmt"
	"math"
)

// Logits is an N×C row-major matrix of classifier outputs, as exported by the trainer.
// Source, when set, names where the values came from (a file) so errors can point at it.
type Logits struct {
	Data   []float32
	N, C   int
	Source string
}

// NewLogits wraps data as an n×c matrix after checking its shape and values.
func NewLogits(data []float32, n, c int) (Logits, error) {
	l := Logits{Data: data, N: n, C: c}
	return l, l.Validate()
}

// LogitsFromFlat infers N from len(data)/c.
func LogitsFromFlat(data []float32, c int) (Logits, error) {
	if c <= 0 {
		return Logits{}, fmt.Errorf("logits: number of classes must be positive, got %d", c)
	}
	if len(data)%c != 0 {
		return Logits{}, fmt.Errorf("logits: length %d is not a multiple of the number of classes %d", len(data), c)
	}
	return NewLogits(data, len(data)/c, c)
}

func (l Logits) name() string {
	if l.Source != "" {
		return "logits " + l.Source
	}
	return "logits"
}

// Validate checks that Data holds exactly N×C finite values.
func (l Logits) Validate() error {
	if l.N <= 0 || l.C <= 0 {
		return fmt.Errorf("%s: shape %d×%d must have N > 0 and C > 0", l.name(), l.N, l.C)
	}
	if len(l.Data) != l.N*l.C {
		return fmt.Errorf("%s: length %d is not N×C = %d×%d = %d", l.name(), len(l.Data), l.N, l.C, l.N*l.C)
	}
	for i, v := range l.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%s: non-finite value %v at row %d, class %d", l.name(), v, i/l.C, i%l.C)
		}
	}
	return nil
}

// Row returns sample i's logits (a view, not a copy).
func (l Logits) Row(i int) []float32 { return l.Data[i*l.C : (i+1)*l.C] }

// LogitsFromArray wraps an array read from a file, such as a .npy of shape [N, C]; source (the
// file name) is kept for error messages.
func LogitsFromArray(data []float32, shape []int, source string) (Logits, error) {
	if len(shape) != 2 {
		return Logits{}, fmt.Errorf("logits %s: shape %v is not 2-D [N, C]", source, shape)
	}
	l := Logits{Data: data, N: shape[0], C: shape[1], Source: source}
	return l, l.Validate()
}

// CheckLabels validates labels against l: one label per row, each in [0, C). labelsSource, when
// not empty, names the labels' file in errors.
func CheckLabels(l Logits, labels []int64, labelsSource string) error {
	if err := l.Validate(); err != nil {
		return err
	}
	what := "labels"
	if labelsSource != "" {
		what = "labels " + labelsSource
	}
	if len(labels) != l.N {
		return fmt.Errorf("%s has %d rows but %s has %d", l.name(), l.N, what, len(labels))
	}
	for i, y := range labels {
		if y < 0 || y >= int64(l.C) {
			return fmt.Errorf("%s: label %d at index %d is out of range [0, %d) for %s", what, y, i, l.C, l.name())
		}
	}
	return nil
}

func (l Logits) checkLabels(labels []int64) error { return CheckLabels(l, labels, "") }

// rowStats returns the argmax, the max and logsumexp of a row, in float64 so that large logits
// neither overflow exp nor lose the small differences NLL depends on.
func rowStats(row []float32) (argmax int, maxv, lse float64) {
	maxv = float64(row[0])
	for j, v := range row {
		if float64(v) > maxv {
			maxv, argmax = float64(v), j
		}
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - maxv)
	}
	return argmax, maxv, maxv + math.Log(s)
}

// Accuracy is the top-1 accuracy; ties in the logits go to the lowest class index, as torch.argmax.
func Accuracy(l Logits, labels []int64) (float64, error) {
	if err := l.checkLabels(labels); err != nil {
		return 0, err
	}
	correct := 0
	for i := range l.N {
		a, _, _ := rowStats(l.Row(i))
		if int64(a) == labels[i] {
			correct++
		}
	}
	return float64(correct) / float64(l.N), nil
}

// NLL is the mean of -log softmax(f(x))[y] over samples.
func NLL(l Logits, labels []int64) (float64, error) {
	if err := l.checkLabels(labels); err != nil {
		return 0, err
	}
	var s float64
	for i := range l.N {
		row := l.Row(i)
		_, _, lse := rowStats(row)
		s += lse - float64(row[labels[i]])
	}
	return s / float64(l.N), nil
}

// LogQX is the density score log q(x) = logsumexp_y f(x)[y], up to the model's constant.
func LogQX(l Logits) ([]float64, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	out := make([]float64, l.N)
	for i := range l.N {
		_, _, out[i] = rowStats(l.Row(i))
	}
	return out, nil
}

// MaxProb is the score max_y softmax(f(x))_y.
func MaxProb(l Logits) ([]float64, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	out := make([]float64, l.N)
	for i := range l.N {
		_, m, lse := rowStats(l.Row(i))
		out[i] = math.Exp(m - lse)
	}
	return out, nil
}

// Score names the per-sample scores used for OOD detection.
type Score string

const (
	ScoreLogQX   Score = "logqx"   // logsumexp of the logits
	ScoreMaxProb Score = "maxprob" // max softmax probability
)

// Scores computes a named score; scores computed elsewhere (JEM's input-gradient norm) are passed
// to the OOD functions directly as []float64.
func Scores(l Logits, s Score) ([]float64, error) {
	switch s {
	case ScoreLogQX:
		return LogQX(l)
	case ScoreMaxProb:
		return MaxProb(l)
	}
	return nil, fmt.Errorf("unknown score %q (want %q or %q)", s, ScoreLogQX, ScoreMaxProb)
}

// Classification holds the headline classification numbers.
type Classification struct {
	Accuracy   float64 `json:"accuracy"`
	NLL        float64 `json:"nll"`
	N          int     `json:"n"`
	NumClasses int     `json:"num_classes"`
}

// Classify computes accuracy and NLL in one call.
func Classify(l Logits, labels []int64) (Classification, error) {
	acc, err := Accuracy(l, labels)
	if err != nil {
		return Classification{}, err
	}
	nll, err := NLL(l, labels)
	if err != nil {
		return Classification{}, err
	}
	return Classification{Accuracy: acc, NLL: nll, N: l.N, NumClasses: l.C}, nil
}
