package experiment

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/hdge-torch/hdge-torch/eval/suite"
)

// TestPXSimOnlyWhereQueued: a spec that asks for HDGE's contrastive score evaluates every run, the
// ones without a queue (CE) with the other scores, instead of stopping at the first of them.
func TestPXSimOnlyWhereQueued(t *testing.T) {
	s := smokeSpec(t)
	s.Eval = map[string]any{"suites": "ood", "ood": "uniform", "ood-limit": json.Number("50"), "scores": "logqx,maxprob,pxsim"}
	var err error
	if s.eval, err = parseEval(s.Eval); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), s, Options{Seeds: []uint64{1}}); err != nil {
		t.Fatal(err)
	}
	for run, want := range map[string]bool{"ce": false, "hdge": true} {
		m, err := readMetrics(filepath.Join(s.RunDir(run, 1), evalDir, suite.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		scores := m.OOD["uniform"]
		if _, ok := scores["logqx"]; !ok {
			t.Errorf("%s: no logqx AUROC: %v", run, scores)
		}
		if _, ok := scores["pxsim"]; ok != want {
			t.Errorf("%s: pxsim AUROC present %v, want %v", run, ok, want)
		}
	}
}
