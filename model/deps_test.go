package model

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEvalDoesNotImportTrainer: evaluation, attacks, sampling and the model package stand beside
// the trainer; a model can be evaluated, scored or sampled with no training code linked in.
func TestEvalDoesNotImportTrainer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../eval/...", "../attack/...", "../model/...", "../sampler/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasSuffix(pkg, "/hdge-torch/trainer") || strings.Contains(pkg, "/hdge-torch/trainer/") {
			t.Errorf("eval, attack, model or sampler depends on %s", pkg)
		}
	}
}
