package experiment

import (
	"strings"
	"testing"
)

const tablesSpec = `{"name": "t", "out": "o", "seeds": [1, 2], "runs": [{"name": "ce"}, {"name": "jem", "set": {"objective": "jem", "norm": "none"}}],
  "tables": [
    {"title": "Table 2: accuracy", "rows": [{"run": "ce", "label": "Cross-entropy"}, {"run": "jem", "label": "JEM"}],
     "columns": [{"metric": "accuracy", "label": "accuracy (%)"}, {"metric": "ood.mnist.logqx.auroc", "label": "MNIST"}]},
    {"title": "Table 1", "note": "each method with its score",
     "rows": [{"run": "jem", "label": "JEM log q(x)", "score": "logqx"}, {"run": "ce", "label": "CE max p(y|x)", "score": "maxprob"}],
     "columns": [{"metric": "ood.cifar10.{score}.auroc", "label": "CIFAR-10"}, {"metric": "no.such.metric"}]}
  ]}`

// TestPaperTables: a spec's tables come out in results.md with the rows, labels and columns it
// names, each cell the runs' mean ± std in the metric's own format, {score} read per row; a column
// no run has is said so; a table naming a run the spec lacks is refused when the spec is read.
func TestPaperTables(t *testing.T) {
	s, err := Parse([]byte(tablesSpec))
	if err != nil {
		t.Fatal(err)
	}
	sd := 0.02
	res := &Results{Name: "t", Generated: "2026-12-02T00:00:00Z", Done: 4, Total: 4, Tables: s.Tables, Commands: map[string]string{},
		Runs: []RunResult{
			{Name: "ce", Metrics: map[string]*Stat{"accuracy": {Mean: 0.6571, Std: &sd, N: 2}, "ood.cifar10.maxprob.auroc": {Mean: 0.6373, N: 1},
				"ood.mnist.logqx.auroc": {Mean: 0.3153, N: 2}}},
			{Name: "jem", Metrics: map[string]*Stat{"accuracy": {Mean: 0.2396, N: 1}, "ood.cifar10.logqx.auroc": {Mean: 0.9441, N: 1},
				"ood.cifar10.maxprob.auroc": {Mean: 0.3, N: 1}}},
		}}
	md := res.Markdown()
	for _, want := range []string{
		"### Table 2: accuracy\n",
		"| | accuracy (%) | MNIST | seeds |",
		"| Cross-entropy | 65.7 ± 2.0 | 0.315 | 2 |",
		"| JEM | 24.0 | – | 1 |",
		"each method with its score",
		"| JEM log q(x) | 0.944 | – | 1 |",
		`| CE max p(y\|x) | 0.637 | – | 1 |`, // a label's | escaped for markdown
		"No run done has no.such.metric",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	if i, j := strings.Index(md, "### Table 2"), strings.Index(md, "### Classification and calibration"); i < 0 || j < i {
		t.Error("the paper's tables do not come before the runner's own")
	}

	for _, bad := range []struct{ edit, want string }{
		{`{"run": "ce", "label": "Cross-entropy"}`, `tables[0] (Table 2: accuracy): rows[0]: no run is named "cee"`},
		{`{"run": "ce", "label": "CE max p(y|x)", "score": "maxprob"}`, `rows[1]: the table's columns read {score}: give the row a "score"`},
		{`{"metric": "no.such.metric"}`, `columns[1]: unknown key "metrc"`},
	} {
		spec := tablesSpec
		switch {
		case strings.Contains(bad.want, "cee"):
			spec = strings.Replace(spec, bad.edit, `{"run": "cee", "label": "Cross-entropy"}`, 1)
		case strings.Contains(bad.want, "{score}"):
			spec = strings.Replace(spec, bad.edit, `{"run": "ce", "label": "CE max p(y|x)"}`, 1)
		default:
			spec = strings.Replace(spec, bad.edit, `{"metrc": "no.such.metric"}`, 1)
		}
		if _, err := Parse([]byte(spec)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("want an error with %q, got %v", bad.want, err)
		}
	}
}
