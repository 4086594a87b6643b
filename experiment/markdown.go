package experiment

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// commandTemplates are the train and eval command lines every unit stands for, with RUN_SETTINGS,
// SEED and RUN as placeholders.
func commandTemplates(s *Spec) (train, eval string) {
	base := trainer.Defaults()
	for _, k := range sortedKeys(s.Base) {
		_ = trainer.SetOption(&base, k, s.Base[k]) // checked when the spec was loaded
	}
	dir := shellWord(s.Out) + "/RUN/seed-SEED"
	train = "hdge-torch train " + strings.Join(configFlags(base), " ") + " RUN_SETTINGS --seed SEED --out " + dir
	eval = "hdge-torch eval --checkpoint " + dir + " --out " + dir + "/eval"
	for _, k := range sortedKeys(s.Eval) {
		if k == "checkpoint" {
			if v, _ := s.Eval[k].(string); v == "last" {
				eval = strings.Replace(eval, "--checkpoint "+dir, "--checkpoint "+dir+"/checkpoints/step-LAST.pt", 1)
			}
			continue
		}
		if v, _ := s.Eval[k].(string); k == "samples" && v != "" && !filepath.IsAbs(v) {
			eval += " --samples " + dir + "/" + shellWord(v) // relative to each run's folder
			continue
		}
		eval += " " + flag(k, s.Eval[k])
	}
	return train, eval
}

// configFlags writes a config as train flags, in --help's order, leaving out empty and
// operational settings and the seed (which the template sets per unit).
func configFlags(c trainer.Config) []string {
	var out []string
	for _, st := range trainer.Settings() {
		if st.Kind == settings.Operational || st.Name == "seed" {
			continue
		}
		v := st.Get(&c)
		switch x := v.(type) {
		case string:
			if x == "" {
				continue
			}
		case []int:
			if len(x) == 0 {
				continue
			}
		case int:
			if st.Name == "steps" && x == 0 {
				continue
			}
		}
		out = append(out, flag(st.Name, v))
	}
	return out
}

// settingFlags writes a run's overrides as flags, sorted by name.
func settingFlags(m map[string]any) string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, flag(k, m[k]))
	}
	return strings.Join(out, " ")
}

func flag(name string, v any) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "--" + name
		}
		return "--" + name + "=false"
	case []int:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = strconv.Itoa(e)
		}
		return "--" + name + " " + strings.Join(parts, ",")
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		return "--" + name + " " + strings.Join(parts, ",")
	case float64:
		return "--" + name + " " + strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return "--" + name + " " + shellWord(x)
	}
	return "--" + name + " " + shellWord(fmt.Sprint(v))
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_./:,=+@%-]+$`)

// shellWord quotes a word for a POSIX shell when it needs it.
func shellWord(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Markdown renders the results as a self-contained README section: what was run and how, on
// what, then the tables.
func (res *Results) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## %s\n\n", res.Name)
	if res.Description != "" {
		p("%s\n\n", strings.TrimSpace(res.Description))
	}
	p("Produced by `%s` (finished runs are skipped, so the same command continues an interrupted grid); "+
		"tables written by `%s` on %s. %d of %d runs × seeds are done and in the tables.\n\n",
		res.Commands["run"], res.Commands["aggregate"], res.Generated[:10], res.Done, res.Total)
	p("Each run and seed is the same as these two commands, with the run's settings from the table below:\n\n")
	p("```sh\n%s\n%s\n```\n\n", res.trainCommand, res.evalCommand)
	p("| run | settings | seeds done | about |\n|---|---|---|---|\n")
	for _, r := range res.Runs {
		var done []string
		for _, u := range r.Units {
			if u.Status == StatusDone {
				done = append(done, strconv.FormatUint(u.Seed, 10))
			}
		}
		settings := settingFlags(r.Set)
		if settings == "" {
			settings = "(the base settings)"
		} else {
			settings = "`" + settings + "`"
		}
		p("| %s | %s | %s | %s |\n", r.Name, settings, orDash(strings.Join(done, ", ")), cell(r.Description))
	}
	p("\n")
	if len(res.Hardware) > 0 {
		p("Hardware: %s.\n", strings.Join(res.Hardware, "; "))
	}
	p("Wall time over all sittings: training %s, evaluation %s, total %s", duration(res.TrainSeconds), duration(res.EvalSeconds),
		duration(res.TrainSeconds+res.EvalSeconds))
	if res.FirstStart != "" {
		p(" (between %s and %s)", res.FirstStart, res.LastEnd)
	}
	p(".\n\n")
	p("Values are mean ± sample standard deviation over the seeds done (one value where one seed is done). " +
		"Accuracy, ECE and PGD accuracy in %%; AUROC with in-distribution test images as positives.\n\n")

	res.paperTablesMarkdown(p)
	p("### Classification and calibration\n\n")
	norms := slices.ContainsFunc(res.Runs, func(r RunResult) bool { return r.Metrics[KeyLogitNorm] != nil })
	p("| run | seeds | accuracy (%%) | ECE (%%) | NLL | train time (min) | train img/s | eval time (min) |")
	if norms {
		p(" final logit norm |")
	}
	if res.Diverged {
		p(" restarts |")
	}
	p("\n|---|---|---|---|---|---|---|---|")
	if norms {
		p("---|")
	}
	if res.Diverged {
		p("---|")
	}
	p("\n")
	for _, r := range res.Runs {
		n := 0
		if a := r.Metrics[KeyAccuracy]; a != nil {
			n = a.N
		}
		p("| %s | %d | %s | %s | %s | %s | %s | %s |", r.Name, n, fmtStat(r.Metrics[KeyAccuracy], 100, 2), fmtStat(r.Metrics[KeyECE], 100, 2),
			fmtStat(r.Metrics[KeyNLL], 1, 3), fmtStat(r.Metrics[KeyTrainSeconds], 1.0/60, 1), fmtStat(r.Metrics[KeyTrainImgPerS], 1, 0),
			fmtStat(r.Metrics[KeyEvalSeconds], 1.0/60, 1))
		if norms {
			p(" %s |", fmtStat(r.Metrics[KeyLogitNorm], 1, 2))
		}
		if res.Diverged {
			p(" %s |", fmtCount(r.Metrics[KeyRestarts]))
		}
		p("\n")
	}
	if norms {
		p("\nfinal logit norm: the mean ‖f(x)‖ over the batch at the last logged training step (metrics.jsonl's logit_norm); " +
			"HDGE's contrast sees only f/‖f‖, and a norm near 0 means a flat softmax.\n")
	}
	if res.Diverged {
		p("\nrestarts: divergences (a non-finite loss, or an energy above --divergence-energy) that the run rolled back from " +
			"to its last checkpoint, as the total over the seeds started (those still training too), then per seed; a run that gave up after --max-restarts is " +
			"listed as failed in the notes.\n")
	}
	p("\n")

	for _, score := range res.Scores {
		p("### OOD detection: AUROC of %s\n\n", scoreTitle(score))
		p("| run |")
		for _, set := range res.OODSets {
			p(" %s |", set)
		}
		p("\n|---|%s\n", strings.Repeat("---|", len(res.OODSets)))
		for _, r := range res.Runs {
			p("| %s |", r.Name)
			for _, set := range res.OODSets {
				p(" %s |", fmtStat(r.Metrics[OODKey(set, score, "auroc")], 1, 3))
			}
			p("\n")
		}
		p("\n")
	}

	if len(res.PGD) > 0 {
		p("### Robustness: PGD accuracy (%%)")
		if res.PGDImages > 0 {
			p(" on the first %d test images", res.PGDImages)
		}
		if n := commonSteps(res.PGD); n > 0 {
			p(", %d steps", n)
		}
		p("\n\n| run |")
		for _, c := range res.PGD {
			p(" %s |", pgdTitle(c, res.PGD))
		}
		p("\n|---|%s\n", strings.Repeat("---|", len(res.PGD)))
		for _, r := range res.Runs {
			p("| %s |", r.Name)
			for _, c := range res.PGD {
				p(" %s |", fmtStat(r.Metrics[c.Key], 100, 1))
			}
			p("\n")
		}
		p("\nε is in pixel units of [0, 1] images; ε = 0 is the clean accuracy of the same images, without the test-time noise.\n\n")
	}

	res.samplesMarkdown(p)

	if res.Baseline != "" && len(res.Runs) > 1 {
		p("### Differences from %s\n\n", res.Baseline)
		p("Mean of the run minus mean of %s; ± is the standard error of that difference, √(s²ₐ/nₐ + s²ᵦ/nᵦ), given when both have two seeds or more. "+
			"Accuracies, ECE and PGD accuracy in percentage points.\n\n", res.Baseline)
		var cols, waiting []string
		for _, r := range res.Runs {
			switch {
			case r.Name == res.Baseline:
			case r.Metrics[KeyAccuracy] == nil:
				waiting = append(waiting, r.Name) // no seed done: a column of dashes says nothing
			default:
				cols = append(cols, r.Name)
			}
		}
		if len(waiting) > 0 {
			p("Not yet in this table (no seed done): %s.\n\n", strings.Join(waiting, ", "))
		}
		p("| metric | %s |\n|---|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
		type row struct {
			label, key string
			scale      float64
			digits     int
		}
		rows := []row{{"accuracy", KeyAccuracy, 100, 2}, {"ECE", KeyECE, 100, 2}, {"NLL", KeyNLL, 1, 3}}
		for _, score := range res.Scores {
			for _, set := range res.OODSets {
				rows = append(rows, row{"AUROC " + scoreTitle(score) + ", " + set, OODKey(set, score, "auroc"), 1, 3})
			}
		}
		for _, c := range res.PGD {
			if c.Eps > 0 {
				rows = append(rows, row{"PGD " + pgdTitle(c, res.PGD), c.Key, 100, 1})
			}
		}
		// Sample scores only where some run and the baseline both have them.
		for _, rw := range []row{{"IS (classifier)", KeyISClassifier, 1, 2}, {"FD (classifier features)", KeyFDClassifier, 1, 2},
			{"IS", KeyIS, 1, 2}, {"FID", KeyFID, 1, 2}} {
			for _, name := range cols {
				if res.Deltas[name][rw.key] != nil {
					rows = append(rows, rw)
					break
				}
			}
		}
		for _, rw := range rows {
			p("| %s |", cell(rw.label))
			for _, name := range cols {
				p(" %s |", fmtDelta(res.Deltas[name][rw.key], rw.scale, rw.digits))
			}
			p("\n")
		}
		p("\n")
	}

	res.figuresMarkdown(p)

	var notes []string
	for _, r := range res.Runs {
		for _, n := range r.Notes {
			notes = append(notes, r.Name+", "+n)
		}
	}
	if len(notes) > 0 {
		p("### Notes\n\n")
		for _, n := range notes {
			p("- %s\n", cell(n))
		}
		p("\n")
	}
	return b.String()
}

func scoreTitle(score string) string {
	switch score {
	case "logqx":
		return "log q(x)"
	case "maxprob":
		return "max p(y|x)"
	case "gradnorm":
		return "−‖∇ₓ log q(x)‖"
	}
	return score
}

func pgdTitle(c PGDColumn, all []PGDColumn) string {
	t := fmt.Sprintf("%s ε=%s", eval.NormTitle(c.Norm), c.Label)
	steps := map[int]bool{}
	for _, o := range all {
		steps[o.Steps] = true
	}
	if len(steps) > 1 {
		t += fmt.Sprintf(", %d steps", c.Steps)
	}
	return t
}

// commonSteps is the PGD step count when every attack used the same, else 0.
func commonSteps(all []PGDColumn) int {
	for _, c := range all[1:] {
		if c.Steps != all[0].Steps {
			return 0
		}
	}
	return all[0].Steps
}

func fmtStat(s *Stat, scale float64, digits int) string {
	if s == nil || s.N == 0 {
		return "–"
	}
	v := strconv.FormatFloat(s.Mean*scale, 'f', digits, 64)
	if s.Std == nil {
		return v
	}
	return v + " ± " + strconv.FormatFloat(*s.Std*math.Abs(scale), 'f', digits, 64)
}

// fmtCount is a count summed over seeds, then seed by seed: "1 (1, 0)".
func fmtCount(s *Stat) string {
	if s == nil || s.N == 0 {
		return "–"
	}
	total, each := 0.0, make([]string, len(s.Values))
	for i, v := range s.Values {
		total += v
		each[i] = strconv.FormatFloat(v, 'f', -1, 64)
	}
	if len(each) == 1 {
		return each[0]
	}
	return strconv.FormatFloat(total, 'f', -1, 64) + " (" + strings.Join(each, ", ") + ")"
}

func fmtDelta(d *Delta, scale float64, digits int) string {
	if d == nil {
		return "–"
	}
	v := strconv.FormatFloat(d.Diff*scale, 'f', digits, 64)
	if d.Diff*scale >= 0 {
		v = "+" + v
	}
	if d.SE == nil {
		return v
	}
	return v + " ± " + strconv.FormatFloat(*d.SE*math.Abs(scale), 'f', digits, 64)
}

func duration(secs float64) string {
	d := time.Duration(secs * float64(time.Second)).Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%d h %02d min", h, m)
	case m > 0:
		return fmt.Sprintf("%d min %02d s", m, s)
	}
	return fmt.Sprintf("%d s", s)
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// cell keeps text from breaking a table row.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
