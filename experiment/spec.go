package experiment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hdge-torch/hdge-torch/eval/suite"
	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// Spec is an experiment: trainer settings shared by every run (Base), the runs that differ from it,
// the seeds each run is trained with, and how each is evaluated. Settings are keyed by the
// train and eval commands' flag names, so a spec reads like the command lines it stands for.
type Spec struct {
	Path        string // the file it was read from, as given
	Name        string
	Description string
	Base        map[string]any // train flag → value, over trainer.Defaults()
	Runs        []RunSpec
	Seeds       []uint64
	Eval        map[string]any // eval flag → value
	Out         string
	// Baseline names the run the others are compared with in a table of differences ("" for none).
	Baseline string
	// Tables are extra tables in a paper's own layout (runs as rows, metrics as columns).
	Tables []PaperTable

	eval    evalSettings
	fileOut string // Out as the file gives it, before any override
}

// RunSpec is one configuration of the grid: Set overrides the spec's Base.
type RunSpec struct {
	Name        string
	Description string
	Set         map[string]any
	// Seeds, when given, trains the run with only these of the spec's seeds (e.g. three seeds for
	// the headline runs and two for the rest); nil: every seed of the spec.
	Seeds []uint64
}

// Keys a spec may hold, in the order they are documented.
var (
	specKeys = []string{"name", "description", "base", "runs", "seeds", "eval", "out", "baseline", "tables"}
	runKeys  = []string{"name", "description", "set", "seeds"}
	// runnerKeys are train flags the runner sets itself, one value per run directory.
	runnerKeys = map[string]string{"seed": `use the spec's "seeds" list`, "out": `use the spec's "out"`}
)

var runName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// SpecError is a problem with a spec file: what is wrong and where.
type SpecError struct {
	Path string
	Err  error
}

func (e *SpecError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }

// Load reads and checks a spec file: unknown keys, bad values and settings the trainer or the eval
// suite would reject are reported with the file and the key.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &SpecError{Path: path, Err: err}
	}
	s, err := Parse(b)
	if err != nil {
		return nil, &SpecError{Path: path, Err: err}
	}
	s.Path = path
	return s, nil
}

// Parse reads a spec from JSON and checks it (see Load).
func Parse(b []byte) (*Spec, error) {
	top, err := decodeObject(b, "the spec", specKeys)
	if err != nil {
		return nil, err
	}
	s := &Spec{}
	for _, k := range []struct {
		key string
		dst *string
	}{{"name", &s.Name}, {"description", &s.Description}, {"out", &s.Out}, {"baseline", &s.Baseline}} {
		if raw, ok := top[k.key]; ok {
			if err := json.Unmarshal(raw, k.dst); err != nil {
				return nil, fmt.Errorf("%q: want a string", k.key)
			}
		}
	}
	if s.Base, err = decodeSettings(top["base"], "base"); err != nil {
		return nil, err
	}
	if s.Eval, err = decodeSettings(top["eval"], "eval"); err != nil {
		return nil, err
	}
	if raw, ok := top["seeds"]; ok {
		if err := json.Unmarshal(raw, &s.Seeds); err != nil {
			return nil, fmt.Errorf(`"seeds": want a list of whole numbers ≥ 0, such as [1, 2, 3]`)
		}
	}
	var runs []json.RawMessage
	if raw, ok := top["runs"]; ok {
		if err := json.Unmarshal(raw, &runs); err != nil {
			return nil, fmt.Errorf(`"runs": want a list of {"name": ..., "set": {...}}`)
		}
	}
	for i, raw := range runs {
		where := fmt.Sprintf("runs[%d]", i)
		obj, err := decodeObject(raw, where, runKeys)
		if err != nil {
			return nil, err
		}
		var r RunSpec
		if err := json.Unmarshal(obj["name"], &r.Name); err != nil || r.Name == "" {
			return nil, fmt.Errorf("%s: \"name\" is required (a string)", where)
		}
		where = fmt.Sprintf("runs[%d] (%s)", i, r.Name)
		if raw, ok := obj["description"]; ok {
			if err := json.Unmarshal(raw, &r.Description); err != nil {
				return nil, fmt.Errorf("%s: \"description\": want a string", where)
			}
		}
		if r.Set, err = decodeSettings(obj["set"], where+": set"); err != nil {
			return nil, err
		}
		if raw, ok := obj["seeds"]; ok {
			if err := json.Unmarshal(raw, &r.Seeds); err != nil || r.Seeds == nil {
				return nil, fmt.Errorf(`%s: "seeds": want a list of the spec's seeds, such as [1, 2]`, where)
			}
		}
		s.Runs = append(s.Runs, r)
	}
	if s.Tables, err = parseTables(top["tables"]); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := s.checkTables(); err != nil {
		return nil, err
	}
	s.fileOut = s.Out
	return s, nil
}

// decodeObject reads a JSON object and rejects keys outside known, naming the key.
func decodeObject(b []byte, where string, known []string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
			return nil, fmt.Errorf("%s: invalid JSON at line %d: %v", where, line, err)
		}
		return nil, fmt.Errorf("%s: want a JSON object: %v", where, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%s: want a JSON object, got null", where)
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("%s: unknown key %q (want %s)", where, k, strings.Join(known, ", "))
		}
	}
	return m, nil
}

// decodeSettings reads a flag → value object, keeping numbers exact.
func decodeSettings(raw json.RawMessage, where string) (map[string]any, error) {
	if raw == nil {
		return map[string]any{}, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: want an object of flag names and values: %v", where, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func (s *Spec) check() error {
	if s.Name == "" {
		return fmt.Errorf(`"name" is required`)
	}
	if s.Out == "" {
		return fmt.Errorf(`"out" is required: the folder the runs and results go to`)
	}
	if len(s.Runs) == 0 {
		return fmt.Errorf(`"runs" is empty: give at least one {"name": ..., "set": {...}}`)
	}
	if len(s.Seeds) == 0 {
		return fmt.Errorf(`"seeds" is empty: give at least one seed`)
	}
	for i, seed := range s.Seeds {
		if slices.Contains(s.Seeds[:i], seed) {
			return fmt.Errorf(`"seeds": %d appears twice`, seed)
		}
	}
	for k := range s.Base {
		if why, ok := runnerKeys[k]; ok {
			return fmt.Errorf("base: %q is set by the runner for each run (%s)", k, why)
		}
	}
	base := trainer.Defaults()
	for _, k := range sortedKeys(s.Base) {
		if err := trainer.SetOption(&base, k, s.Base[k]); err != nil {
			return fmt.Errorf("base: %w", err)
		}
	}
	for i, r := range s.Runs {
		where := fmt.Sprintf("runs[%d] (%s)", i, r.Name)
		if !runName.MatchString(r.Name) {
			return fmt.Errorf("%s: the name is a folder name: lowercase letters, digits, '.', '_' or '-'", where)
		}
		for _, o := range s.Runs[:i] {
			if o.Name == r.Name {
				return fmt.Errorf("%s: two runs are named %q", where, r.Name)
			}
		}
		for k := range r.Set {
			if why, ok := runnerKeys[k]; ok {
				return fmt.Errorf("%s: set: %q is set by the runner for each run (%s)", where, k, why)
			}
		}
		if r.Seeds != nil {
			if len(r.Seeds) == 0 {
				return fmt.Errorf(`%s: "seeds" is empty: leave it out to train every seed of the spec`, where)
			}
			for j, seed := range r.Seeds {
				if !slices.Contains(s.Seeds, seed) {
					return fmt.Errorf(`%s: "seeds": %d is not among the spec's seeds %v`, where, seed, s.Seeds)
				}
				if slices.Contains(r.Seeds[:j], seed) {
					return fmt.Errorf(`%s: "seeds": %d appears twice`, where, seed)
				}
			}
		}
		if dep := s.dependency(r); dep != "" {
			// Only an earlier run: a sitting trains runs in spec order, so stage 1 is there first,
			// and a chain can never loop.
			j := slices.IndexFunc(s.Runs[:i], func(o RunSpec) bool { return o.Name == dep })
			if j < 0 {
				return fmt.Errorf(`%s: set: "init": {run:%s} must name a run listed before this one`, where, dep)
			}
			for _, seed := range s.RunSeeds(r) {
				if !slices.Contains(s.RunSeeds(s.Runs[j]), seed) {
					return fmt.Errorf(`%s: seed %d starts from {run:%s}, which is not trained with that seed`, where, seed, dep)
				}
			}
		}
		cfg, err := s.config(r, s.RunSeeds(r)[0])
		if err != nil {
			return fmt.Errorf("%s: set: %w", where, err)
		}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("%s: the run's settings are not valid: %w", where, err)
		}
	}
	if s.Baseline != "" && s.run(s.Baseline) == nil {
		return fmt.Errorf(`"baseline": no run is named %q`, s.Baseline)
	}
	ev, err := parseEval(s.Eval)
	if err != nil {
		return err
	}
	s.eval = ev
	return nil
}

func (s *Spec) run(name string) *RunSpec {
	for i := range s.Runs {
		if s.Runs[i].Name == name {
			return &s.Runs[i]
		}
	}
	return nil
}

// RunSeeds are the seeds a run is trained with, in the spec's order.
func (s *Spec) RunSeeds(r RunSpec) []uint64 {
	if r.Seeds == nil {
		return s.Seeds
	}
	out := make([]uint64, 0, len(r.Seeds))
	for _, seed := range s.Seeds {
		if slices.Contains(r.Seeds, seed) {
			out = append(out, seed)
		}
	}
	return out
}

// RunNames lists the runs in spec order.
func (s *Spec) RunNames() []string {
	out := make([]string, len(s.Runs))
	for i, r := range s.Runs {
		out[i] = r.Name
	}
	return out
}

// RunDir is where a run is trained for one seed; its evaluation goes in RunDir/eval.
func (s *Spec) RunDir(run string, seed uint64) string {
	return filepath.Join(s.Out, run, fmt.Sprintf("seed-%d", seed))
}

// Config is the trainer configuration of a run and seed: the trainer's defaults, then Base, then
// the run's Set.
func (s *Spec) Config(run string, seed uint64) (trainer.Config, error) {
	r := s.run(run)
	if r == nil {
		return trainer.Config{}, fmt.Errorf("no run is named %q (the spec has %s)", run, strings.Join(s.RunNames(), ", "))
	}
	return s.config(*r, seed)
}

func (s *Spec) config(r RunSpec, seed uint64) (trainer.Config, error) {
	cfg := trainer.Defaults()
	for _, k := range sortedKeys(s.Base) {
		if err := trainer.SetOption(&cfg, k, s.Base[k]); err != nil {
			return cfg, err
		}
	}
	for _, k := range sortedKeys(r.Set) {
		if err := trainer.SetOption(&cfg, k, r.Set[k]); err != nil {
			return cfg, err
		}
	}
	cfg.Seed = seed
	cfg.Out = s.RunDir(r.Name, seed)
	if dep := initRun(cfg.Init); dep != "" {
		cfg.Init = s.RunDir(dep, seed)
	}
	cfg.Init = strings.ReplaceAll(cfg.Init, "{seed}", strconv.FormatUint(seed, 10))
	return cfg, nil
}

// initPlaceholder is an "init" value naming another run of the same spec: "{run:NAME}" is that
// run's folder for the same seed, so stage 2 of a chained baseline (a linear probe, JointLoss
// fine-tuning) starts from its own seed's stage 1. The runner trains NAME first.
var initPlaceholder = regexp.MustCompile(`^\{run:([a-z0-9][a-z0-9_.-]*)\}$`)

// initRun is the run an init value names with "{run:NAME}", or "".
func initRun(init string) string {
	if m := initPlaceholder.FindStringSubmatch(init); m != nil {
		return m[1]
	}
	return ""
}

// dependency is the run a run's --init names with "{run:NAME}", or "".
func (s *Spec) dependency(r RunSpec) string {
	v, ok := r.Set["init"]
	if !ok {
		v = s.Base["init"]
	}
	str, _ := v.(string)
	return initRun(str)
}

// evalSettings is the parsed "eval" object: a suite.Config without the model or output folder.
type evalSettings struct {
	cfg  suite.Config
	last bool // evaluate the newest checkpoint rather than the best on validation
}

// parseEval reads the "eval" object with the eval command's flag names and defaults: the same
// declared settings (suite.Settings) and the same parsing as the eval command's flags.
func parseEval(m map[string]any) (evalSettings, error) {
	var ev evalSettings
	table := suite.Settings()
	for _, k := range sortedKeys(m) {
		if _, ok := table.Lookup(k); !ok && k != "checkpoint" {
			return ev, fmt.Errorf("eval: unknown key %q (want %s)", k, strings.Join(evalKeys(), ", "))
		}
	}
	f := suite.DefaultFlags()
	for _, k := range sortedKeys(m) {
		if k == "checkpoint" {
			continue
		}
		v := m[k]
		// A budget or list may be written as a number ("pgd-limit": 200, "pgd-linf-eps": 0.03).
		if n, ok := v.(json.Number); ok {
			if cur, _ := table.Get(&f, k); isString(cur) {
				v = n.String()
			}
		}
		if err := table.Set(&f, k, v); err != nil {
			name, msg, _ := strings.Cut(err.Error(), ": ")
			return ev, fmt.Errorf("eval: %q: %s", name, msg)
		}
	}
	cfg, err := f.Config(func(name string) bool { _, ok := m[name]; return ok })
	if err != nil {
		var ie *suite.InputError
		if errors.As(err, &ie) {
			return ev, fmt.Errorf("eval: %q: %v", ie.Flag, ie.Err)
		}
		name, msg, _ := strings.Cut(strings.TrimPrefix(err.Error(), "--"), ": ")
		return ev, fmt.Errorf("eval: %q: %s", name, msg)
	}
	ck := "best"
	if v, ok := m["checkpoint"]; ok {
		if ck, ok = v.(string); !ok {
			return ev, fmt.Errorf(`eval: "checkpoint": want best or last, got %s`, settings.Describe(v))
		}
	}
	switch ck {
	case "last":
		ev.last = true
	case "best":
	default:
		return ev, fmt.Errorf(`eval: "checkpoint": unknown value %q (want best, the best on validation, or last)`, ck)
	}
	ev.cfg = cfg
	return ev, nil
}

func isString(v any) bool { _, ok := v.(string); return ok }

// evalKeys are the names an "eval" object accepts: the evaluation settings and "checkpoint".
func evalKeys() []string { return append(suite.Settings().Names(), "checkpoint") }

// evalKey identifies the evaluation settings; an evaluation made with other settings is redone.
func (s *Spec) evalKey() string {
	b, _ := json.Marshal(s.Eval) // map keys come out sorted, so equal settings give equal text
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
