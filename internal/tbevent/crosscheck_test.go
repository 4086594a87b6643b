package tbevent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestTensorBoardReadsFile reads a written file with TensorBoard's own loader when the Python
// package is installed (Debian bookworm packages neither tensorboard nor tensorflow; pip's
// tensorboard works), and is skipped otherwise.
func TestTensorBoardReadsFile(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import tensorboard").Run() != nil {
		t.Skip("python3 tensorboard not installed")
	}
	w, err := NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w.Scalar("loss", 7, 0.5)
	w.Scalar("acc", 8, 0.75)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	script := `
import sys
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
for e in LegacyEventFileLoader(sys.argv[1]).Load():
    if e.HasField("summary"):
        for v in e.summary.value:
            print(e.step, v.tag, v.simple_value)
    else:
        print("version", e.file_version)
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, w.Path()).CombinedOutput()
	if err != nil {
		t.Fatalf("tensorboard loader: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "version brain.Event:2\n7 loss 0.5\n8 acc 0.75"; got != want {
		t.Errorf("tensorboard read\n%s\nwant\n%s", got, want)
	}
}
