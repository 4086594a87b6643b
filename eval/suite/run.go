package suite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/eval"
)

// Output file names in Config.Out.
const (
	MetricsFile = "metrics.json"
	ReportFile  = "report.html"
	LogitsDir   = "logits"
)

// Run evaluates: with Checkpoint it loads the model, exports logits (and PGD results) into
// Out/logits, then scores them; with Logits it scores an earlier export without the model. Either
// way it writes Out/metrics.json, Out/report.html and a PNG per figure, and returns the report.
// Problems with the user's input come back as *InputError.
func Run(ctx context.Context, cfg Config) (*eval.Report, error) {
	runtime.LockOSThread() // one OS thread, one malloc arena for libtorch's buffers (see trainer.Train)
	defer runtime.UnlockOSThread()
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	samples, err := findSamples(&cfg, log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, inputErr("out", "%v", err)
	}
	dir, scores := cfg.Logits, cfg.Scores
	if dir == "" {
		dir = filepath.Join(cfg.Out, LogitsDir)
		if err := export(ctx, &cfg, dir, log); err != nil {
			return nil, err
		}
		scores = cfg.scores()
	}
	idx, err := ReadIndex(dir)
	if err != nil {
		return nil, inputErr("logits", "%v", err)
	}
	if scores == nil {
		scores = idx.Scores
	}
	r, err := Analyze(dir, idx, cfg.Suites, scores, log)
	if err != nil {
		var ie *InputError
		if cfg.Logits != "" && !errors.As(err, &ie) {
			err = &InputError{Flag: "logits", Err: err}
		}
		return nil, err
	}
	if samples != nil {
		if err := r.AddSamples(samples.s, samples.g); err != nil {
			return nil, inputErr("samples", "%v", err)
		}
	}
	if err := Write(r, cfg.Out); err != nil {
		return nil, err
	}
	return r, nil
}

// Write renders the report's figures into dir and writes metrics.json and report.html there. In
// metrics.json each plot's file is named relative to dir, so the folder can move.
func Write(r *eval.Report, dir string) error {
	if err := r.WritePlots(dir); err != nil {
		return err
	}
	for _, f := range r.Figures {
		f.File = filepath.Base(f.File)
	}
	if err := r.WriteJSON(filepath.Join(dir, MetricsFile)); err != nil {
		return err
	}
	if err := r.WriteHTML(filepath.Join(dir, ReportFile)); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
