package compare

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/npy"
)

// The names eval writes into its output folder (eval/suite's MetricsFile, LogitsDir, IndexFile)
// and the experiment runner's layout. They are repeated here because eval/suite loads models and
// so pulls in the trainer, which this package must not.
const (
	metricsFile = "metrics.json"
	logitsDir   = "logits"
	indexFile   = "index.json"
	evalDir     = "eval"
	trainingLog = "metrics.jsonl"
)

var seedDir = regexp.MustCompile(`^seed-(\d+)$`)

// Run is one entry of the comparison: a single evaluation, or one run of an experiment with an
// evaluation per seed. A seed without an evaluation is kept, as missing.
type Run struct {
	Name  string
	Path  string
	Seeds []*Seed
}

// Seed is one evaluation folder; Eval is nil when the seed has none.
type Seed struct {
	Seed   int // -1 when the folder is not a seed-N folder
	Dir    string
	Eval   *Eval
	Reason string // why Eval is nil
}

// Eval is what one evaluation folder holds.
type Eval struct {
	Dir      string
	Metrics  eval.MetricsJSON
	Index    *index            // nil when the logits folder is absent
	Training *eval.TrainingLog // nil when no training log was found
}

// Present lists the seeds that have an evaluation.
func (r *Run) Present() []*Eval {
	var out []*Eval
	for _, s := range r.Seeds {
		if s.Eval != nil {
			out = append(out, s.Eval)
		}
	}
	return out
}

// index is the part of a logits folder's index.json that comparison reads.
type index struct {
	Format string     `json:"format"`
	Test   setEntry   `json:"test"`
	OOD    []setEntry `json:"ood"`
	// Training names the copy of the run's metrics.jsonl inside the folder.
	Training string `json:"training"`
}

type setEntry struct {
	Name    string            `json:"name"`
	Dataset string            `json:"dataset"`
	Logits  string            `json:"logits"`
	Labels  string            `json:"labels"`
	Scores  map[string]string `json:"scores"`
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// Resolve turns each argument into runs. An argument may be an evaluation folder (it holds
// metrics.json), a training run's folder (its eval/ is used), a run of an experiment (seed-N/eval
// under it) or an experiment's output folder (one run per sub-folder with seeds). A run or seed
// without an evaluation is kept as missing (a training run with metrics.jsonl but no eval/ is such
// a run); an argument that is none of these is an error naming it, and so is a set of arguments
// none of which has been evaluated.
func Resolve(args []string) ([]*Run, error) {
	if len(args) == 0 {
		return nil, errors.New("nothing to compare: give evaluation, run or experiment folders")
	}
	var runs []*Run
	for _, a := range args {
		rs, err := resolve(a)
		if err != nil {
			return nil, err
		}
		if len(rs) == 0 {
			return nil, fmt.Errorf("%s holds no evaluation (no %s in it, in %s/ or in seed-N/%s/ below it, and it is not a training run)", a, metricsFile, evalDir, evalDir)
		}
		runs = append(runs, rs...)
	}
	if !slices.ContainsFunc(runs, func(r *Run) bool { return len(r.Present()) > 0 }) {
		var missing []string
		for _, r := range runs {
			for _, s := range r.Seeds {
				missing = append(missing, s.Reason)
			}
		}
		return nil, fmt.Errorf("nothing to compare: none of the runs has been evaluated (%s)", strings.Join(missing, "; "))
	}
	// Names label curves and columns: make them unique.
	seen := map[string]int{}
	for _, r := range runs {
		seen[r.Name]++
	}
	for name, n := range seen {
		if n < 2 {
			continue
		}
		for _, r := range runs {
			if r.Name == name {
				r.Name = r.Path
			}
		}
	}
	return runs, nil
}

func resolve(path string) ([]*Run, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", path)
	}
	clean := filepath.Clean(path)
	switch {
	case isFile(filepath.Join(clean, metricsFile)):
		return []*Run{single(runName(clean), clean, clean)}, nil
	case isDir(filepath.Join(clean, evalDir)) || isFile(filepath.Join(clean, trainingLog)):
		return []*Run{single(filepath.Base(clean), clean, filepath.Join(clean, evalDir))}, nil
	}
	if seeds, err := seedsOf(clean); err != nil || len(seeds) > 0 {
		if err != nil {
			return nil, err
		}
		return []*Run{{Name: filepath.Base(clean), Path: clean, Seeds: seeds}}, nil
	}
	entries, err := os.ReadDir(clean)
	if err != nil {
		return nil, err
	}
	var runs []*Run
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(clean, e.Name())
		seeds, err := seedsOf(sub)
		if err != nil {
			return nil, err
		}
		if len(seeds) > 0 {
			runs = append(runs, &Run{Name: e.Name(), Path: sub, Seeds: seeds})
		}
	}
	return runs, nil
}

// runName names an evaluation folder after its run: .../RUN/seed-N/eval → RUN, .../RUN/eval → RUN.
func runName(dir string) string {
	if filepath.Base(dir) != evalDir {
		return filepath.Base(dir)
	}
	parent := filepath.Dir(dir)
	if seedDir.MatchString(filepath.Base(parent)) {
		return filepath.Base(filepath.Dir(parent))
	}
	return filepath.Base(parent)
}

func single(name, path, dir string) *Run {
	s := &Seed{Seed: -1, Dir: dir}
	s.load()
	return &Run{Name: name, Path: path, Seeds: []*Seed{s}}
}

func seedsOf(dir string) ([]*Seed, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seeds []*Seed
	for _, e := range entries {
		m := seedDir.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		s := &Seed{Seed: n, Dir: filepath.Join(dir, e.Name(), evalDir)}
		s.load()
		seeds = append(seeds, s)
	}
	slices.SortFunc(seeds, func(a, b *Seed) int { return a.Seed - b.Seed })
	return seeds, nil
}

// load reads the seed's evaluation, leaving Eval nil with a reason when there is none. A folder
// that holds a metrics.json which does not parse is reported as missing too, with the parse
// error, so one damaged seed does not hide the rest.
func (s *Seed) load() {
	e, err := LoadEval(s.Dir)
	if err != nil {
		s.Reason = err.Error()
		return
	}
	s.Eval = e
}

// LoadEval reads an evaluation folder: metrics.json, the logits folder's index when present, and
// the training log (the folder's copy, or the run's metrics.jsonl beside eval/).
func LoadEval(dir string) (*Eval, error) {
	path := filepath.Join(dir, metricsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no evaluation: %s is missing", path)
	}
	if err != nil {
		return nil, err
	}
	e := &Eval{Dir: dir}
	if err := json.Unmarshal(b, &e.Metrics); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if ip := filepath.Join(dir, logitsDir, indexFile); isFile(ip) {
		ib, err := os.ReadFile(ip)
		if err != nil {
			return nil, err
		}
		var ix index
		if err := json.Unmarshal(ib, &ix); err != nil {
			return nil, fmt.Errorf("%s: %w", ip, err)
		}
		e.Index = &ix
	}
	for _, tp := range e.trainingCandidates() {
		if isFile(tp) {
			if t, err := eval.ReadTrainingLog(tp); err == nil && len(t.Records) > 0 {
				e.Training = t
				break
			}
		}
	}
	return e, nil
}

func (e *Eval) trainingCandidates() []string {
	var c []string
	if e.Index != nil && e.Index.Training != "" && e.Index.Training == filepath.Base(e.Index.Training) {
		c = append(c, filepath.Join(e.Dir, logitsDir, e.Index.Training))
	}
	return append(c, filepath.Join(filepath.Dir(e.Dir), trainingLog))
}

// plainName keeps file names read from an index inside its folder.
func plainName(f string) bool {
	return f != "" && f == filepath.Base(f) && !strings.HasPrefix(f, ".")
}

// logits reads one exported logits file, for ROC curves and histograms.
func (e *Eval) logits(file string) (eval.Logits, error) {
	if !plainName(file) {
		return eval.Logits{}, fmt.Errorf("%s: file name %q must be a plain name inside the folder", filepath.Join(e.Dir, logitsDir, indexFile), file)
	}
	path := filepath.Join(e.Dir, logitsDir, file)
	a, err := npy.Read(path)
	if err != nil {
		return eval.Logits{}, err
	}
	v, err := a.Float32s()
	if err != nil {
		return eval.Logits{}, fmt.Errorf("%s: %w", path, err)
	}
	return eval.LogitsFromArray(v, a.Shape, path)
}

// Scores returns the in-distribution and OOD scores of one set, from the logits for logqx and
// maxprob and from the exported per-sample files for any other score.
func (e *Eval) Scores(set, score string) (in, out []float64, err error) {
	if e.Index == nil {
		return nil, nil, fmt.Errorf("%s: no logits folder", e.Dir)
	}
	i := slices.IndexFunc(e.Index.OOD, func(s setEntry) bool { return s.Name == set })
	if i < 0 {
		return nil, nil, fmt.Errorf("%s: no OOD set %s in the logits folder", e.Dir, set)
	}
	get := func(s setEntry) ([]float64, error) {
		switch eval.Score(score) {
		case eval.ScoreLogQX, eval.ScoreMaxProb:
			l, err := e.logits(s.Logits)
			if err != nil {
				return nil, err
			}
			return eval.Scores(l, eval.Score(score))
		}
		f := s.Scores[score]
		if !plainName(f) {
			return nil, fmt.Errorf("%s: no %s scores for %s", e.Dir, score, s.Name)
		}
		a, err := npy.Read(filepath.Join(e.Dir, logitsDir, f))
		if err != nil {
			return nil, err
		}
		return a.Float64s()
	}
	if in, err = get(e.Index.Test); err != nil {
		return nil, nil, err
	}
	if out, err = get(e.Index.OOD[i]); err != nil {
		return nil, nil, err
	}
	return in, out, nil
}
