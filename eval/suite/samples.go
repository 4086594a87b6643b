package suite

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/gen"
	"github.com/hdge-torch/hdge-torch/model"
)

// SamplesDir is the conventional folder of a run's samples, RUN/samples: `hdge-torch sample`'s
// default --out, and where an evaluation of the run looks for them.
const SamplesDir = "samples"

// ReadSamples reads a folder written by `hdge-torch sample` for a report: its grid (required),
// its top-confidence selection, how the samples were drawn (sample.json) and the generation
// section of its metrics.json (nil when the samples were not scored).
func ReadSamples(dir string) (eval.Samples, *eval.Generation, error) {
	s := eval.Samples{Dir: dir}
	if st, err := os.Stat(dir); err != nil {
		return s, nil, err
	} else if !st.IsDir() {
		return s, nil, fmt.Errorf("%s is not a folder (want the --out of hdge-torch sample)", dir)
	}
	var info *gen.Info
	if b, err := os.ReadFile(filepath.Join(dir, gen.InfoFile)); err == nil {
		info = &gen.Info{}
		if err := json.Unmarshal(b, info); err != nil {
			return s, nil, fmt.Errorf("%s: %w", filepath.Join(dir, gen.InfoFile), err)
		}
		s.Caption = caption(info)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return s, nil, err
	}
	for _, f := range []struct{ name, title string }{
		{gen.GridFile, "Samples"},
		{gen.TopFile, "Per class, the samples the model is most confident of"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, fs.ErrNotExist) && f.name != gen.GridFile {
			continue
		}
		if err != nil {
			return s, nil, fmt.Errorf("%s has no sample grid (want a folder written by hdge-torch sample): %w", dir, err)
		}
		title := f.title
		if f.name == gen.GridFile && info != nil && info.Conditional {
			title = "Samples, one row per class"
		}
		s.Images = append(s.Images, eval.SampleImage{File: f.name, Title: title, PNG: b})
	}
	g, err := ReadGeneration(filepath.Join(dir, gen.MetricsFile))
	return s, g, err
}

// ReadGeneration reads the generation section of a metrics.json: nil, nil when the file or the
// section is absent; an error naming the file when either is malformed.
func ReadGeneration(path string) (*eval.Generation, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m struct {
		Generation *eval.Generation `json:"generation"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if g := m.Generation; g != nil && (g.FeatureNet == "" || g.N <= 0) {
		return nil, fmt.Errorf("%s: the generation section names no feature network or no samples", path)
	}
	return m.Generation, nil
}

func caption(in *gen.Info) string {
	var parts []string
	if in.Conditional && len(in.Classes) > 0 {
		parts = append(parts, fmt.Sprintf("%d per class of %d classes, from log q(x, y)", in.N/len(in.Classes), len(in.Classes)))
	} else {
		parts = append(parts, fmt.Sprintf("%d samples of log q(x)", in.N))
	}
	from := "U(-1, 1) noise"
	if in.FromBuffer {
		from = "the replay buffer"
	}
	rounds := fmt.Sprintf(" × %d rounds", in.Rounds)
	if in.Rounds == 1 {
		rounds = ""
	}
	parts = append(parts, fmt.Sprintf("%d SGLD steps%s from %s (step size %g, noise %g)", in.Steps, rounds, from, in.SGLDLR, in.SGLDStd))
	if in.Step > 0 {
		parts = append(parts, fmt.Sprintf("checkpoint step %d", in.Step))
	}
	return strings.Join(parts, "; ")
}

// foundSamples is the samples folder an evaluation shows, read before any work is done.
type foundSamples struct {
	s eval.Samples
	g *eval.Generation
}

// findSamples reads the samples folder the evaluation has: --samples, else RUN/samples or the
// output folder itself when it holds a scored `hdge-torch sample` output (nil when none does).
// Only a folder named by --samples is an error when it cannot be read.
func findSamples(cfg *Config, log *zap.Logger) (*foundSamples, error) {
	if cfg.Samples != "" {
		s, g, err := ReadSamples(cfg.Samples)
		if err == nil {
			err = s.Check()
		}
		if err != nil {
			return nil, inputErr("samples", "%v", err)
		}
		s.Dir = relativeTo(cfg.Out, cfg.Samples)
		return &foundSamples{s, g}, nil
	}
	var dirs []string
	if cfg.Checkpoint != "" {
		dirs = append(dirs, filepath.Join(model.RunDirOf(cfg.Checkpoint), SamplesDir))
	}
	dirs = append(dirs, cfg.Out)
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, gen.GridFile)); err != nil {
			continue
		}
		s, g, err := ReadSamples(dir)
		if err == nil && g == nil {
			continue // not scored: no sample command's metrics.json
		}
		if err == nil {
			err = s.Check()
		}
		if err != nil {
			log.Info("samples left out of the report", zap.String("dir", dir), zap.Error(err))
			continue
		}
		log.Info("samples", zap.String("dir", dir), zap.String("feature_net", g.FeatureNet), zap.Float64("is", g.ISMean), zap.Float64("fd", g.FD))
		s.Dir = relativeTo(cfg.Out, dir)
		return &foundSamples{s, g}, nil
	}
	return nil, nil
}

// relativeTo names dir from base when it lies below base or beside it, so that the two folders
// can move together; else absolutely.
func relativeTo(base, dir string) string {
	ab, err1 := filepath.Abs(base)
	ad, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return dir
	}
	rel, err := filepath.Rel(ab, ad)
	if err != nil || strings.HasPrefix(rel, ".."+string(filepath.Separator)+"..") || rel == ".." {
		return ad
	}
	return filepath.ToSlash(rel)
}
