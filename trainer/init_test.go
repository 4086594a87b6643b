package trainer

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/model"
)

// TestInitFromReleasedFile: --init takes a checkpoint in the HDGE/JEM authors' released layout as
// it takes hdge-torch's own, and the run starts from exactly its weights.
func TestInitFromReleasedFile(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 120, 20)
	c := tinyConfig(t, ds)
	c.Steps, c.Dropout, c.TensorBoard = 2, 0, false
	sum, err := Train(context.Background(), c, Options{SkipTest: true})
	if err != nil {
		t.Fatal(err)
	}
	released := filepath.Join(t.TempDir(), "released.pt")
	if _, err := model.ExportReleased(sum.Checkpoint, released); err != nil {
		t.Fatal(err)
	}
	m, err := model.Build(c.modelSettings(), 1, 10, 99) // other initial weights
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := loadInit(m, released); err != nil {
		t.Fatal(err)
	}
	want := weights(t, sum.Checkpoint)
	for _, p := range m.StateDict() {
		got, err := p.T.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		w := want[p.Name]
		if len(w) != len(got) {
			t.Fatalf("%s: %d values, want %d", p.Name, len(got), len(w))
		}
		for i := range w {
			if got[i] != w[i] {
				t.Fatalf("%s[%d] = %v after --init from the released file, %v in the run", p.Name, i, got[i], w[i])
			}
		}
	}
}
