package trainer

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
)

// TestRunsInOneProcessAreIndependent: two runs with dropout (ce and hdge) trained at the same
// time in one process end with bit-identical weights, optimiser state and queue to the same runs
// trained one after the other. Each run owns its generators, so nothing depends on how the two
// interleave. The check runs in a child process with single-threaded OpenBLAS (read when the
// library loads), where repeated runs are bit-identical.
func TestRunsInOneProcessAreIndependent(t *testing.T) {
	if os.Getenv("HDGE_INDEPENDENCE_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRunsInOneProcessAreIndependent$", "-test.count=1")
		cmd.Env = append(os.Environ(), "HDGE_INDEPENDENCE_CHILD="+t.TempDir(), "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	dir := os.Getenv("HDGE_INDEPENDENCE_CHILD")
	ds := testutil.SmallFashion(t, dir, 200, 50)
	configs := func(prefix string) []Config {
		var out []Config
		for _, obj := range []string{"ce", "hdge"} {
			c := tinyConfig(t, ds)
			c.Objective, c.Dropout, c.Steps = obj, 0.3, 8
			c.Out = filepath.Join(dir, prefix+"-"+obj)
			out = append(out, c)
		}
		return out
	}
	sequential := configs("seq")
	for _, c := range sequential {
		if _, err := Train(context.Background(), c, Options{SkipTest: true}); err != nil {
			t.Fatal(err)
		}
	}
	together := configs("par")
	errs := make([]error, len(together))
	var wg sync.WaitGroup
	for i, c := range together {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Train(context.Background(), c, Options{SkipTest: true})
		}()
	}
	wg.Wait()
	for i := range together {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		name := sequential[i].Objective
		a := weights(t, filepath.Join(sequential[i].Out, "checkpoints", "step-00000008.pt"))
		b := weights(t, filepath.Join(together[i].Out, "checkpoints", "step-00000008.pt"))
		if len(a) == 0 || len(a) != len(b) {
			t.Fatalf("%s: checkpoints hold %d and %d tensors", name, len(a), len(b))
		}
		for k, va := range a {
			vb := b[k]
			for j := range va {
				if math.Float64bits(va[j]) != math.Float64bits(vb[j]) {
					t.Fatalf("%s: %s[%d] is %v trained alone, %v trained beside another run", name, k, j, va[j], vb[j])
				}
			}
		}
	}
	// The runs used their dropout: the same run without it ends elsewhere.
	c := configs("nodrop")[0]
	c.Dropout = 0
	if _, err := Train(context.Background(), c, Options{SkipTest: true}); err != nil {
		t.Fatal(err)
	}
	a := weights(t, filepath.Join(sequential[0].Out, "checkpoints", "step-00000008.pt"))
	b := weights(t, filepath.Join(c.Out, "checkpoints", "step-00000008.pt"))
	if fmt.Sprint(a["conv1.weight"]) == fmt.Sprint(b["conv1.weight"]) {
		t.Fatal("dropout 0.3 and dropout 0 gave the same weights: dropout was not applied")
	}
}
