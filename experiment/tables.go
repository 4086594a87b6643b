package experiment

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// PaperTable is a table a spec asks for in a paper's own layout: chosen runs as rows, chosen
// metrics of results.json as columns, each cell the mean ± std over the seeds done. A column's
// metric may hold "{score}", replaced by each row's score, so that one table can set methods with
// different OOD scores side by side (the paper's Table 1: JEM with log q(x), a classifier with
// max p(y|x)).
type PaperTable struct {
	Title   string        `json:"title"`
	Note    string        `json:"note,omitempty"`
	Rows    []TableRow    `json:"rows"`
	Columns []TableColumn `json:"columns"`
}

// TableRow is one row: a run of the spec, its label, and the score its {score} columns read.
type TableRow struct {
	Run   string `json:"run"`
	Label string `json:"label,omitempty"`
	Score string `json:"score,omitempty"`
}

// TableColumn is one column: a metric key of results.json (e.g. accuracy, ece,
// ood.cifar10.logqx.auroc, pgd.linf.eps=8/255.steps=10, is_classifier) and its heading.
type TableColumn struct {
	Metric string `json:"metric"`
	Label  string `json:"label,omitempty"`
}

var (
	tableKeys    = []string{"title", "note", "rows", "columns"}
	tableRowKeys = []string{"run", "label", "score"}
	tableColKeys = []string{"metric", "label"}
)

// parseTables reads a spec's "tables".
func parseTables(raw json.RawMessage) ([]PaperTable, error) {
	if raw == nil {
		return nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf(`"tables": want a list of {"title": ..., "rows": [...], "columns": [...]}`)
	}
	var out []PaperTable
	for i, t := range list {
		where := fmt.Sprintf("tables[%d]", i)
		obj, err := decodeObject(t, where, tableKeys)
		if err != nil {
			return nil, err
		}
		var pt PaperTable
		if err := readStrings(obj, where, []stringField{{"title", &pt.Title, "a string"}, {"note", &pt.Note, ""}}); err != nil {
			return nil, err
		}
		where = fmt.Sprintf("tables[%d] (%s)", i, pt.Title)
		var rows, cols []json.RawMessage
		if err := json.Unmarshal(obj["rows"], &rows); err != nil || len(rows) == 0 {
			return nil, fmt.Errorf(`%s: "rows": want a non-empty list of {"run": ..., "label": ...}`, where)
		}
		if err := json.Unmarshal(obj["columns"], &cols); err != nil || len(cols) == 0 {
			return nil, fmt.Errorf(`%s: "columns": want a non-empty list of {"metric": ..., "label": ...}`, where)
		}
		for j, r := range rows {
			w := fmt.Sprintf("%s: rows[%d]", where, j)
			o, err := decodeObject(r, w, tableRowKeys)
			if err != nil {
				return nil, err
			}
			var row TableRow
			if err := readStrings(o, w, []stringField{{"run", &row.Run, "a run's name"}, {"label", &row.Label, ""}, {"score", &row.Score, ""}}); err != nil {
				return nil, err
			}
			pt.Rows = append(pt.Rows, row)
		}
		for j, c := range cols {
			w := fmt.Sprintf("%s: columns[%d]", where, j)
			o, err := decodeObject(c, w, tableColKeys)
			if err != nil {
				return nil, err
			}
			var col TableColumn
			if err := readStrings(o, w, []stringField{{"metric", &col.Metric, "a key of results.json's metrics, such as accuracy"}, {"label", &col.Label, ""}}); err != nil {
				return nil, err
			}
			pt.Columns = append(pt.Columns, col)
		}
		out = append(out, pt)
	}
	return out, nil
}

// stringField is one string key of a table object: required (with what it should be) or optional.
type stringField struct {
	key      string
	dst      *string
	required string // "" for an optional key
}

// readStrings sets each field present in o, naming the key when it is not a string or a required
// one is missing or blank.
func readStrings(o map[string]json.RawMessage, where string, fields []stringField) error {
	for _, f := range fields {
		raw, ok := o[f.key]
		err := error(nil)
		if ok {
			err = json.Unmarshal(raw, f.dst)
		}
		switch {
		case f.required != "" && (err != nil || strings.TrimSpace(*f.dst) == ""):
			return fmt.Errorf("%s: %q is required (%s)", where, f.key, f.required)
		case err != nil:
			return fmt.Errorf("%s: %q: want a string", where, f.key)
		}
	}
	return nil
}

// checkTables: every row names a run of the spec, and a row whose columns read {score} gives one.
func (s *Spec) checkTables() error {
	for i, t := range s.Tables {
		templated := slices.ContainsFunc(t.Columns, func(c TableColumn) bool { return strings.Contains(c.Metric, "{score}") })
		for j, r := range t.Rows {
			where := fmt.Sprintf("tables[%d] (%s): rows[%d]", i, t.Title, j)
			if s.run(r.Run) == nil {
				return fmt.Errorf("%s: no run is named %q (the spec has %s)", where, r.Run, strings.Join(s.RunNames(), ", "))
			}
			if templated && r.Score == "" {
				return fmt.Errorf("%s: the table's columns read {score}: give the row a \"score\" (logqx, maxprob, gradnorm, pxsim)", where)
			}
		}
	}
	return nil
}

// metricFormat is how a metric is printed: fractions as percentages, AUROCs to three decimals.
func metricFormat(key string) (scale float64, digits int) {
	switch {
	case key == KeyAccuracy || key == KeyECE || key == "best_val_acc" || strings.HasPrefix(key, "pgd.") || strings.HasSuffix(key, ".fpr95"):
		return 100, 1
	case strings.HasSuffix(key, ".auroc") || strings.HasSuffix(key, ".aupr_in") || strings.HasSuffix(key, ".aupr_out"):
		return 1, 3
	case key == KeyNLL || key == "brier":
		return 1, 3
	case key == "fd_classifier" || key == "fd":
		return 1, 1
	}
	return 1, 2
}

// paperTablesMarkdown writes the spec's tables from the aggregated runs.
func (res *Results) paperTablesMarkdown(p func(string, ...any)) {
	byName := map[string]*RunResult{}
	for i := range res.Runs {
		byName[res.Runs[i].Name] = &res.Runs[i]
	}
	for _, t := range res.Tables {
		p("### %s\n\n", t.Title)
		if t.Note != "" {
			p("%s\n\n", strings.TrimSpace(t.Note))
		}
		p("| |")
		for _, c := range t.Columns {
			p(" %s |", cell(cmp.Or(c.Label, c.Metric)))
		}
		p(" seeds |\n|---|")
		for range t.Columns {
			p("---|")
		}
		p("---|\n")
		seen := map[string]bool{}
		for _, r := range t.Rows {
			rr := byName[r.Run]
			p("| %s |", cell(cmp.Or(r.Label, r.Run)))
			n := 0
			for _, c := range t.Columns {
				key := strings.ReplaceAll(c.Metric, "{score}", r.Score)
				var st *Stat
				if rr != nil {
					st = rr.Metrics[key]
				}
				if st != nil {
					seen[c.Metric] = true
					n = max(n, st.N)
				}
				scale, digits := metricFormat(key)
				p(" %s |", fmtStat(st, scale, digits))
			}
			p(" %d |\n", n)
		}
		var missing []string
		for _, c := range t.Columns {
			if !seen[c.Metric] && res.Done > 0 {
				missing = append(missing, c.Metric)
			}
		}
		if len(missing) > 0 {
			p("\nNo run done has %s: a metric of another evaluation, or not a key of results.json's metrics.\n", strings.Join(missing, ", "))
		}
		p("\nMean ± sample standard deviation over the seeds done; accuracy, ECE, FPR95 and PGD accuracy in %%.\n\n")
	}
}
