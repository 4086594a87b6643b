package trainer

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/ptfile"
)

const refPython = "/usr/bin/python3"

func havePythonTorch(t *testing.T) {
	t.Helper()
	if err := exec.Command(refPython, "-c", "import torch").Run(); err != nil {
		t.Skip("Debian's python3-torch is not installed; `make deps` installs it")
	}
}

// loadRef reads a reference file written by testdata/hdge_reference.py.
func loadRef(t *testing.T, s *torch.Scope, path string) map[string]*torch.Tensor {
	t.Helper()
	v, err := ptfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*torch.Tensor{}
	d := v.(*ptfile.OrderedDict)
	for _, k := range d.Keys {
		tt, err := s.FromHost(d.Values[k].(*ptfile.Tensor))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		out[k] = tt
	}
	return out
}

func maxRelDiff(t *testing.T, got, want *torch.Tensor) float64 {
	t.Helper()
	g, err := got.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	w, err := want.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != len(w) {
		t.Fatalf("length %d, want %d", len(g), len(w))
	}
	var scale, diff float64
	for i := range w {
		scale = math.Max(scale, math.Abs(w[i]))
		diff = math.Max(diff, math.Abs(g[i]-w[i]))
	}
	return diff / math.Max(scale, 1e-30)
}

// TestContrastiveMatchesReleasedCode checks the value and the gradient of the queue-based
// log q(x|y) term against the released code's B×C×K einsum formulation run by python3-torch.
func TestContrastiveMatchesReleasedCode(t *testing.T) {
	havePythonTorch(t)
	dir := t.TempDir()
	const k, b = 4096, 64
	for _, classes := range []int{10, 100} {
		for _, eps := range []float64{0, 0.1} {
			for _, form := range []string{"official", "eq13"} {
				for _, norm := range []bool{true, false} {
					name := fmt.Sprintf("C%d/eps%g/%s/norm=%v", classes, eps, form, norm)
					t.Run(name, func(t *testing.T) {
						normArg := "0"
						if norm {
							normArg = "1"
						}
						path := filepath.Join(dir, fmt.Sprintf("ref-%d-%g-%s-%s.pt", classes, eps, form, normArg))
						cmd := exec.Command(refPython, "testdata/hdge_reference.py", path, fmt.Sprint(classes), fmt.Sprint(k),
							fmt.Sprint(b), fmt.Sprint(eps), form, normArg, "7")
						if out, err := cmd.CombinedOutput(); err != nil {
							t.Fatalf("reference: %v\n%s", err, out)
						}
						s := torch.NewScope()
						defer s.Close()
						ref := loadRef(t, s, path)
						obj, err := newHDGE(hdgeConfig{HDGESettings: HDGESettings{QueueSize: k, Temperature: 0.1, Contrast: form, NormLogits: norm}, Alpha: 0, LabelSmoothing: eps, Classes: classes}, nil, torch.CPU)
						if err != nil {
							t.Fatal(err)
						}
						defer obj.Close()
						if err := obj.LoadState(map[string]*torch.Tensor{"queue": ref["queue"], "queue_ptr": s.FromInt64([]int64{0})}); err != nil {
							t.Fatal(err)
						}
						logits := s.Clone(ref["logits"])
						if err := logits.SetRequiresGrad(true); err != nil {
							t.Fatal(err)
						}
						loss, terms := obj.Loss(stepOn(s, logits, ref["labels"]))
						if len(terms) != 1 || terms[0].Name != "gen" {
							t.Fatalf("alpha 0 should give only the gen term, got %v", terms)
						}
						s.Backward(loss)
						grad := s.Grad(logits)
						if err := s.Err(); err != nil {
							t.Fatal(err)
						}
						if d := maxRelDiff(t, loss, ref["loss"]); d > 1e-5 {
							t.Errorf("loss differs from the released formulation by %.3g relative", d)
						}
						if d := maxRelDiff(t, grad, ref["grad"]); d > 1e-5 {
							t.Errorf("gradient differs from the released formulation by %.3g relative", d)
						}
					})
				}
			}
		}
	}
}

// TestQueueWrapsAround checks that enqueuing batches that do not divide K overwrites the oldest
// columns in order and wraps, and that the negatives table follows the queue.
func TestQueueWrapsAround(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	const classes, k = 3, 10
	obj, err := newHDGE(hdgeConfig{HDGESettings: HDGESettings{QueueSize: k, Temperature: 0.1, Contrast: "official", NormLogits: true}, Alpha: 0.5, Classes: classes}, nil, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	var want [classes][k]float32
	q0, _ := obj.queue.Float32s()
	for c := 0; c < classes; c++ {
		for j := 0; j < k; j++ {
			want[c][j] = q0[c*k+j]
		}
	}
	next := float32(1)
	ptr := 0
	for _, batch := range []int{4, 4, 4, 7, 13} {
		vals := make([]float32, batch*classes)
		for i := 0; i < batch; i++ {
			for c := 0; c < classes; c++ {
				vals[i*classes+c] = next
				next++
			}
		}
		if err := obj.Update(s.FromFloat32(vals, int64(batch), classes)); err != nil {
			t.Fatal(err)
		}
		first := 0
		if batch > k {
			first = batch - k
		}
		for i := first; i < batch; i++ {
			for c := 0; c < classes; c++ {
				want[c][ptr] = vals[i*classes+c]
			}
			ptr = (ptr + 1) % k
		}
		if int(obj.ptr) != ptr {
			t.Fatalf("after a batch of %d: queue pointer %d, want %d", batch, obj.ptr, ptr)
		}
		got, _ := obj.queue.Float32s()
		for c := 0; c < classes; c++ {
			for j := 0; j < k; j++ {
				if got[c*k+j] != want[c][j] {
					t.Fatalf("after a batch of %d: queue[%d][%d] = %v, want %v", batch, c, j, got[c*k+j], want[c][j])
				}
			}
		}
	}
	// The cached negatives table must equal a fresh computation from the queue.
	table, _ := obj.table.Float32s()
	if err := obj.refreshTable(0, k); err != nil {
		t.Fatal(err)
	}
	fresh, _ := obj.table.Float32s()
	for i := range fresh {
		if math.Abs(float64(table[i]-fresh[i])) > 1e-5*math.Abs(float64(fresh[i])) {
			t.Fatalf("negatives table entry %d is stale: %v, fresh %v", i, table[i], fresh[i])
		}
	}
}

// TestInBatchMatchesReference checks the hdge-simclr term against a naive B×B×C formulation.
func TestInBatchMatchesReference(t *testing.T) {
	havePythonTorch(t)
	dir := t.TempDir()
	for _, classes := range []int{10, 100} {
		for _, eps := range []float64{0, 0.1} {
			for _, form := range []string{"official", "eq13"} {
				name := fmt.Sprintf("C%d/eps%g/%s", classes, eps, form)
				t.Run(name, func(t *testing.T) {
					path := filepath.Join(dir, fmt.Sprintf("simclr-%d-%g-%s.pt", classes, eps, form))
					cmd := exec.Command(refPython, "testdata/hdge_reference.py", path, fmt.Sprint(classes), "1", "32",
						fmt.Sprint(eps), "simclr-"+form, "1", "11")
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("reference: %v\n%s", err, out)
					}
					s := torch.NewScope()
					defer s.Close()
					ref := loadRef(t, s, path)
					obj := &inBatchObjective{cfg: hdgeConfig{HDGESettings: HDGESettings{Temperature: 0.1, Contrast: form, NormLogits: true}, Alpha: 0, LabelSmoothing: eps, Classes: classes}}
					logits := s.Clone(ref["logits"])
					if err := logits.SetRequiresGrad(true); err != nil {
						t.Fatal(err)
					}
					loss, _ := obj.Loss(stepOn(s, logits, ref["labels"]))
					s.Backward(loss)
					grad := s.Grad(logits)
					if err := s.Err(); err != nil {
						t.Fatal(err)
					}
					if d := maxRelDiff(t, loss, ref["loss"]); d > 1e-5 {
						t.Errorf("loss differs from the reference by %.3g relative", d)
					}
					// The B×B contrast runs entirely in float32 against a float64 reference; its gradient
					// differs by up to ~2e-5 relative (one-hot, C=100), so the bound here is looser.
					if d := maxRelDiff(t, grad, ref["grad"]); d > 5e-5 {
						t.Errorf("gradient differs from the reference by %.3g relative", d)
					}
				})
			}
		}
	}
}

func TestMain(m *testing.M) {
	torch.SetNumThreads(2)
	os.Exit(m.Run())
}

// stepOn is a training step whose logits are given.
func stepOn(s *torch.Scope, logits, y *torch.Tensor) *Step {
	st := &Step{S: s, Y: y}
	st.SetLogits(logits)
	return st
}
