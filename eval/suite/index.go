package suite

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/npy"
	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
)

// IndexFile is the name of the index in a logits folder.
const IndexFile = "index.json"

// indexFormat changes when the layout of the folder does.
const indexFormat = "hdge-torch-logits/1"

// Index describes a logits folder: which file holds what, and the configuration that produced
// them, so the suites and the report can be re-made from the folder alone.
//
//	test.npy, test_labels.npy           in-distribution logits (N×C float32) and labels (N int64)
//	<set>.npy [, <set>_labels.npy]      each OOD set; labels only for sets that have them
//	<set>_gradnorm.npy, <set>_pxsim.npy per-sample extra scores (float64), when computed
//	pgd_labels.npy, pgd_clean.npy       the attacked images' labels and clean logits (no noise)
//	pgd_<norm>_eps<ε>_steps<k>.npy      logits deciding each attack (see attack.Result)
//	training.jsonl                      a copy of the run's metrics.jsonl, when it had one
//	queue.npy                           HDGE's queue of past logits (C×K float32), for pxsim
type Index struct {
	Format         string         `json:"format"`
	Title          string         `json:"title"`
	Model          string         `json:"model"`
	Config         map[string]any `json:"config"` // the report's config: run, eval, checkpoint
	Scores         []string       `json:"scores"` // the OOD scores asked for at export
	Test           SetEntry       `json:"test"`
	OOD            []SetEntry     `json:"ood"`
	Training       string         `json:"training,omitempty"`        // file in the folder
	TrainingSource string         `json:"training_source,omitempty"` // where it was copied from
	PGD            *PGDEntry      `json:"pgd,omitempty"`
	// Queue is HDGE's queue (QueueFile) and Contrast the settings pxsim scores it with.
	Queue    string    `json:"queue,omitempty"`
	Contrast *Contrast `json:"contrast,omitempty"`
}

// SetEntry is one evaluated set.
type SetEntry struct {
	Name    string            `json:"name"`
	Spec    string            `json:"spec"`
	Dataset string            `json:"dataset"` // the data's own name, with any conversion
	N       int               `json:"n"`
	C       int               `json:"num_classes"`
	Logits  string            `json:"logits"`
	Labels  string            `json:"labels,omitempty"`
	Scores  map[string]string `json:"scores,omitempty"` // score name → file of N float64
}

// PGDEntry lists the attacks run on the first N test images.
type PGDEntry struct {
	N       int           `json:"n"`
	Labels  string        `json:"labels"`
	Clean   string        `json:"clean"`
	Attacks []AttackEntry `json:"attacks"`
}

// AttackEntry is one PGD setting and its logits file.
type AttackEntry struct {
	Norm        string  `json:"norm"`
	Eps         float64 `json:"eps"`
	Steps       int     `json:"steps"`
	StepSize    float64 `json:"step_size"`
	Restarts    int     `json:"restarts"`
	RandomStart bool    `json:"random_start"`
	Logits      string  `json:"logits"`
	// Measured over the adversarial images: the largest distance from the clean image in the
	// attack's norm, and the seconds the attack took.
	MaxPerturbation float64 `json:"max_perturbation"`
	Seconds         float64 `json:"seconds"`
}

func writeIndex(dir string, idx *Index) error {
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, IndexFile), append(b, '\n'))
}

// ReadIndex reads and checks a logits folder's index.
func ReadIndex(dir string) (*Index, error) {
	path := filepath.Join(dir, IndexFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return nil, fmt.Errorf("logits folder %s: %w", dir, serr)
		}
		return nil, fmt.Errorf("%s is missing: not a logits folder, or its export did not finish", path)
	}
	if err != nil {
		return nil, err
	}
	var idx Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if idx.Format != indexFormat {
		return nil, fmt.Errorf("%s: format %q, want %q", path, idx.Format, indexFormat)
	}
	if idx.Test.Logits == "" || idx.Test.Labels == "" {
		return nil, fmt.Errorf("%s: no in-distribution logits and labels listed", path)
	}
	files := []string{idx.Test.Logits, idx.Test.Labels, idx.Training, idx.Queue}
	for _, s := range idx.OOD {
		if s.Logits == "" {
			return nil, fmt.Errorf("%s: OOD set %q lists no logits file", path, s.Name)
		}
		files = append(files, s.Logits, s.Labels)
		for _, f := range s.Scores {
			files = append(files, f)
		}
	}
	if p := idx.PGD; p != nil {
		files = append(files, p.Labels, p.Clean)
		for _, a := range p.Attacks {
			files = append(files, a.Logits)
		}
	}
	// The folder is data someone may have edited: keep every file it names inside it.
	for _, f := range files {
		if f != "" && (filepath.IsAbs(f) || f != filepath.Base(f) || strings.HasPrefix(f, ".")) {
			return nil, fmt.Errorf("%s: file name %q must be a plain name inside the folder", path, f)
		}
	}
	return &idx, nil
}

// SetLogits reads one set's logits from the folder dir that idx describes: TestSetName for the
// in-distribution test set, otherwise the OOD set of that name.
func (idx *Index) SetLogits(dir, name string) (eval.Logits, error) {
	if name == TestSetName {
		return readLogits(dir, idx.Test.Logits, idx.Test.N, idx.Test.C)
	}
	for _, s := range idx.OOD {
		if s.Name == name {
			return readLogits(dir, s.Logits, s.N, s.C)
		}
	}
	return eval.Logits{}, fmt.Errorf("logits folder %s has no set %q", dir, name)
}

// readLogits loads an N×C float32 .npy and checks it against the index's shape.
func readLogits(dir, file string, wantN, wantC int) (eval.Logits, error) {
	path := filepath.Join(dir, file)
	a, err := npy.Read(path)
	if err != nil {
		return eval.Logits{}, err
	}
	v, err := a.Float32s()
	if err != nil {
		return eval.Logits{}, fmt.Errorf("%s: %w", path, err)
	}
	l, err := eval.LogitsFromArray(v, a.Shape, path)
	if err != nil {
		return eval.Logits{}, err
	}
	if (wantN > 0 && l.N != wantN) || (wantC > 0 && l.C != wantC) {
		return eval.Logits{}, fmt.Errorf("%s holds %d×%d logits, the index says %d×%d", path, l.N, l.C, wantN, wantC)
	}
	return l, nil
}

// readLabels loads the labels of l and checks them against it.
func readLabels(dir, file string, l eval.Logits) ([]int64, error) {
	path := filepath.Join(dir, file)
	a, err := npy.Read(path)
	if err != nil {
		return nil, err
	}
	if len(a.Shape) != 1 {
		return nil, fmt.Errorf("%s: labels must be 1-D, got shape %v", path, a.Shape)
	}
	y, err := a.Int64s()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := eval.CheckLabels(l, y, path); err != nil {
		return nil, err
	}
	return y, nil
}

// readScores loads a per-sample score file of n values.
func readScores(dir, file string, n int) ([]float64, error) {
	path := filepath.Join(dir, file)
	a, err := npy.Read(path)
	if err != nil {
		return nil, err
	}
	v, err := a.Float64s()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(a.Shape) != 1 || len(v) != n {
		return nil, fmt.Errorf("%s: %d scores of shape %v for %d samples", path, len(v), a.Shape, n)
	}
	return v, nil
}

// checkLabelCount checks that a label file has one entry per row of l, whatever their values.
func checkLabelCount(dir, file string, l eval.Logits) error {
	path := filepath.Join(dir, file)
	a, err := npy.Read(path)
	if err != nil {
		return err
	}
	if len(a.Shape) != 1 || a.Shape[0] != l.N {
		return fmt.Errorf("%s has %d rows but labels %s have shape %v", l.Source, l.N, path, a.Shape)
	}
	return nil
}
