package eval

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRobustnessCleanAndChecks: RobustnessClean replaces the classification accuracy as the ε = 0
// reference, and the checks reach metrics.json and the page.
func TestRobustnessCleanAndChecks(t *testing.T) {
	r := NewReport("t", "HDGE", nil)
	r.Classification = &Classification{Accuracy: 0.9, N: 10000, NumClasses: 10}
	rows := []RobustnessRow{{Model: "HDGE", Norm: "linf", Eps: 0, Steps: 10, Accuracy: 0.86}, {Model: "HDGE", Norm: "linf", Eps: 0.01, Steps: 10, Accuracy: 0.5}}
	mustNoErr(t, r.AddRobustness(rows))
	if !strings.Contains(strings.Join(r.Warnings, "\n"), "differs from clean accuracy 0.9000") {
		t.Fatalf("without RobustnessClean the ε=0 row is checked against the test accuracy: %q", r.Warnings)
	}
	r = NewReport("t", "HDGE", nil)
	r.Classification = &Classification{Accuracy: 0.9, N: 10000, NumClasses: 10}
	r.RobustnessClean = map[string]float64{"HDGE": 0.86}
	r.RobustnessChecks = []RobustnessCheck{{Name: "eps0_equals_clean", Passed: true, Detail: "0.8600 = 0.8600"}, {Name: "more_steps_no_help", Passed: false, Detail: "x <y>"}}
	mustNoErr(t, r.AddRobustness(rows))
	if len(r.Warnings) != 0 {
		t.Errorf("warnings %q with the subset's clean accuracy", r.Warnings)
	}
	b, err := json.Marshal(r.Metrics())
	mustNoErr(t, err)
	var m struct {
		Checks []RobustnessCheck `json:"robustness_checks"`
	}
	mustNoErr(t, json.Unmarshal(b, &m))
	if len(m.Checks) != 2 || m.Checks[0].Name != "eps0_equals_clean" || !m.Checks[0].Passed || m.Checks[1].Passed {
		t.Errorf("robustness_checks in metrics.json: %+v", m.Checks)
	}
	page, err := r.HTML()
	mustNoErr(t, err)
	for _, s := range []string{`id="robustness-checks"`, "eps0_equals_clean", "FAIL", "x &lt;y&gt;"} {
		if !strings.Contains(string(page), s) {
			t.Errorf("report.html lacks %q", s)
		}
	}
}

func TestEpsLabel(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 8.0 / 255: "8/255", 1.0 / 255: "1/255", 0.25: "0.25", 1: "1", 0.03: "0.03", 2: "2"} {
		if got := epsLabel(v); got != want {
			t.Errorf("epsLabel(%v) = %q, want %q", v, got, want)
		}
	}
}
