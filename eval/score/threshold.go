package score

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"

	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
	"github.com/hdge-torch/hdge-torch/model"
)

// ThresholdsFile, in the run directory, caches the thresholds score has set.
const ThresholdsFile = "thresholds.json"

const thresholdsFormat = "hdge-torch-thresholds/1"

// Threshold is a decision threshold on one score of one checkpoint: images scoring at least
// Value are in-distribution; Achieved is the share of the N validation images that are.
type Threshold struct {
	Checkpoint string  `json:"checkpoint"` // file name inside the run's checkpoints/
	Step       int     `json:"step"`
	Score      string  `json:"score"`
	TPR        float64 `json:"tpr"`
	Value      float64 `json:"threshold"`
	Achieved   float64 `json:"achieved_tpr,omitempty"`
	N          int     `json:"validation_images,omitempty"`
	Noise      float64 `json:"test_noise"`
	Seed       uint64  `json:"seed"`
}

type thresholdsDoc struct {
	Format     string      `json:"format"`
	Thresholds []Threshold `json:"thresholds"`
}

func (t Threshold) same(o Threshold) bool {
	return t.Checkpoint == o.Checkpoint && t.Step == o.Step && t.Score == o.Score && t.TPR == o.TPR && t.Seed == o.Seed
}

// ThresholdFor is the threshold that keeps a share tpr of in-distribution scores at or above
// it: the ⌊(1−tpr)·n⌋-th smallest score. Returned with the share actually kept (ties).
func ThresholdFor(scores []float64, tpr float64) (value, achieved float64) {
	s := slices.Clone(scores)
	slices.Sort(s)
	k := min(int(math.Floor((1-tpr)*float64(len(s)))), len(s)-1)
	value = s[k]
	kept := 0
	for _, v := range s {
		if v >= value {
			kept++
		}
	}
	return value, float64(kept) / float64(len(s))
}

// threshold returns the threshold to decide with, where it came from and the cache file: the
// flag's value; else the one cached in RUN/thresholds.json for this checkpoint, score, TPR and
// seed; else one set now on the run's validation images and cached (atomically) for next time.
func threshold(ctx context.Context, cfg *Config, m *model.Loaded, sc *scorer, src data.Source, runDir string, log *zap.Logger) (Threshold, string, string, error) {
	want := Threshold{Checkpoint: filepath.Base(m.Path), Step: m.Step, Score: cfg.Score, TPR: cfg.TPR, Noise: m.Run.Noise, Seed: cfg.Seed}
	if cfg.Threshold != nil {
		want.Value, want.TPR = *cfg.Threshold, 0
		return want, "flag", "", nil
	}
	file := filepath.Join(runDir, ThresholdsFile)
	doc, err := readThresholds(file)
	if err != nil {
		return want, "", file, err
	}
	for _, t := range doc.Thresholds {
		if t.same(want) {
			return t, "cache", file, nil
		}
	}
	if m.Released {
		return want, "", file, inputErr("threshold", "%s is a released checkpoint: its validation split cannot be rebuilt (the file records no dataset, split or seed), so no threshold can be set for --tpr %g; give one with --threshold VALUE", m.Path, cfg.TPR)
	}
	var run struct {
		ValSize int `json:"val_size"`
	}
	if err := json.Unmarshal(m.Config, &run); err != nil {
		return want, "", file, fmt.Errorf("%s: config: %w", m.Path, err)
	}
	if run.ValSize <= 0 {
		return want, "", file, inputErr("threshold", "the run of %s held out no validation images (val_size %d), so no threshold can be set for --tpr %g; give one with --threshold VALUE", m.Path, run.ValSize, cfg.TPR)
	}
	full, err := src.Load(m.Run.Dataset, data.Train)
	if err != nil {
		return want, "", file, inputErr("data-dir", "rebuilding the validation split of %s (for --tpr %g): the run's dataset %s: %v; point --data-dir at it or give --threshold VALUE", m.Path, cfg.TPR, m.Run.Dataset, err)
	}
	if run.ValSize >= full.N {
		return want, "", file, inputErr("threshold", "the validation split of %s cannot be rebuilt: val_size %d, but %s has %d training images now; give --threshold VALUE", m.Path, run.ValSize, m.Run.Dataset, full.N)
	}
	_, val := data.SplitValidation(full, run.ValSize, m.Run.Seed)
	log.Info("no saved threshold: setting it on the run's validation images", zap.String("score", cfg.Score),
		zap.Float64("tpr", cfg.TPR), zap.Int("images", val.N), zap.String("cache", file))
	if err := ctx.Err(); err != nil {
		return want, "", file, err
	}
	out, err := m.Logits(val, m.Run.Noise, cfg.BatchSize, cfg.Seed)
	if err != nil {
		return want, "", file, err
	}
	l, err := eval.NewLogits(out, val.N, m.Classes())
	if err != nil {
		return want, "", file, err
	}
	s, err := sc.scores(l)
	if err != nil {
		return want, "", file, err
	}
	want.Value, want.Achieved = ThresholdFor(s, cfg.TPR)
	want.N = val.N
	// Re-read just before writing, so a threshold another job cached meanwhile is kept.
	if doc, err = readThresholds(file); err != nil {
		return want, "", file, err
	}
	doc.Thresholds = append(slices.DeleteFunc(doc.Thresholds, want.same), want)
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return want, "", file, err
	}
	if err := atomicfile.WriteFile(file, append(b, '\n')); err != nil {
		log.Warn("threshold not cached", zap.String("file", file), zap.Error(err))
		return want, "computed", "", nil
	}
	return want, "computed", file, nil
}

func readThresholds(file string) (*thresholdsDoc, error) {
	doc := &thresholdsDoc{Format: thresholdsFormat}
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, doc); err != nil || doc.Format != thresholdsFormat {
		return nil, fmt.Errorf("%s: not a thresholds file (format %q): remove it to set the thresholds again", file, doc.Format)
	}
	return doc, nil
}
