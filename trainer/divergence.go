package trainer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// DivergenceSettings say what a run does when its training diverges: a non-finite loss, or an
// energy term (JEM's log q(x) of the data or the samples) whose magnitude passes a threshold,
// which is how SGLD training fails before it overflows (JEM's issues #4 and #8), or, when asked
// for, a cross-entropy term far above a uniform guess's ln C, which is how it fails when the
// energies stay just under the threshold while the logits blow up.
type DivergenceSettings struct {
	OnDivergence     string  `json:"on_divergence"`
	DivergenceEnergy float64 `json:"divergence_energy"`
	DivergenceCE     float64 `json:"divergence_ce"`
	MaxRestarts      int     `json:"max_restarts"`
	RestartLRScale   float64 `json:"restart_lr_scale"`
}

const groupDivergence = "divergence"

func init() {
	registerSettings(
		settings.String("on-divergence", groupDivergence, operational, "stop", "stop (keep the last good checkpoint and fail) or restart (roll back to it, re-seed the sampler, maybe lower the lr, go on)",
			func(c *Config) *string { return &c.OnDivergence }, settings.OneOf("stop", "restart")),
		settings.Float("divergence-energy", groupDivergence, operational, 1e4, "an energy term (loss_energy_*) of larger magnitude counts as divergence (0 = only non-finite losses)",
			func(c *Config) *float64 { return &c.DivergenceEnergy }, settings.NonNegative),
		settings.Float("divergence-ce", groupDivergence, operational, 0, "a cross-entropy term (loss_ce) above this counts as divergence (0 = off; ln C is a uniform guess, e.g. 11.5 = 5 ln 10)",
			func(c *Config) *float64 { return &c.DivergenceCE }, settings.NonNegative),
		settings.Int("max-restarts", groupDivergence, operational, 3, "with --on-divergence restart: restarts before the run gives up",
			func(c *Config) *int { return &c.MaxRestarts }, settings.AtLeast(0)),
		settings.Float("restart-lr-scale", groupDivergence, operational, 1, "with --on-divergence restart: the lr is multiplied by this at each restart (JEM's authors: a lower lr helps)",
			func(c *Config) *float64 { return &c.RestartLRScale }, func(x float64) error {
				if x > 0 && x <= 1 {
					return nil
				}
				return fmt.Errorf("must be in (0, 1], got %g", x)
			}),
	)
}

// divergenceState is what a run remembers of its restarts. A resumed run reads it back from
// metrics.jsonl's restart events (resumedDivergence), so a run that restarted in one sitting keeps
// its lower lr and its count against --max-restarts in the next.
type divergenceState struct {
	restarts int
	lrScale  float64 // 0 means 1
}

func (d *divergenceState) scale() float64 {
	if d.lrScale == 0 {
		return 1
	}
	return d.lrScale
}

// resumedDivergence is the divergence state of a run resumed at step: that of the last restart
// in its metrics.jsonl that rolled back to step or before (the checkpoints after a restart were
// trained with its lr scale). A run without restarts, or without the file, has none.
func resumedDivergence(dir string, step int) (divergenceState, error) {
	var d divergenceState
	log, err := ReadTrainingLog(dir)
	if err != nil {
		return d, err
	}
	for _, r := range log.Restarts {
		if r.Step <= step {
			d = divergenceState{restarts: r.Restart, lrScale: r.LRScale}
		}
	}
	return d, nil
}

// errRestart asks Train to roll back and run the loop again.
type errRestart struct {
	step   int
	reason string
}

func (e *errRestart) Error() string {
	return fmt.Sprintf("step %d diverged (%s)", e.step, e.reason)
}

// DivergedError ends a run by divergence: stopped at once (--on-divergence stop) or given up after
// --max-restarts. A run that had validated before it diverged also gets a summary.json with
// Diverged set (Train writes it), so that its best checkpoint can be evaluated as the method's
// result, as JEM's authors used the last checkpoint before a divergence.
type DivergedError struct {
	Step     int    // the step that diverged
	Reason   string // which value passed which threshold
	Restarts int    // the restarts before the run gave up
	err      error
}

func (e *DivergedError) Error() string { return e.err.Error() }
func (e *DivergedError) Unwrap() error { return e.err }

// Divergence is summary.json's record of how a run that diverged ended.
type Divergence struct {
	Step     int    `json:"step"`
	Reason   string `json:"reason"`
	Restarts int    `json:"restarts"`
}

// divergence names why a step's values count as divergence, or is "" when they do not.
func (c *Config) divergence(values map[string]float64) string {
	if !finite(values) {
		return "loss is not finite"
	}
	if c.DivergenceEnergy > 0 {
		for _, k := range sortedKeys(values) {
			if strings.HasPrefix(k, "loss_"+energyPrefix) && math.Abs(values[k]) > c.DivergenceEnergy {
				return fmt.Sprintf("|%s| = %.4g is above --divergence-energy %g", k, math.Abs(values[k]), c.DivergenceEnergy)
			}
		}
	}
	if ce, ok := values["loss_ce"]; ok && c.DivergenceCE > 0 && ce > c.DivergenceCE {
		return fmt.Sprintf("loss_ce = %.4g is above --divergence-ce %g", ce, c.DivergenceCE)
	}
	return ""
}

// diverged records a divergence at the step and returns the loop's error: the run's stop (as
// before this setting existed) or an errRestart for Train to act on.
func (st *runState) diverged(epoch int, values map[string]float64, reason string) error {
	rec := map[string]any{"step": st.step, "epoch": epoch, "error": reason, "event": "divergence"}
	if !finite(values) {
		rec["error"] = "non-finite loss"
	}
	for k, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			rec[k] = v
		}
	}
	if err := st.writeMetrics(rec); err != nil {
		st.log.Error("recording the failure", zap.Error(err))
	}
	if st.cfg.OnDivergence == "restart" {
		return &errRestart{step: st.step, reason: reason}
	}
	last := st.lastCkpt
	if last == "" {
		last = "none (no checkpoint was written before the failure)"
	}
	hint := "Try a lower --lr"
	if !finite(values) {
		reason = "loss is not finite (" + formatTerms(values) + ")"
	} else {
		hint = "Try a lower --lr, --energy-l2 0.1, more --sgld-steps, or --on-divergence restart"
	}
	return &DivergedError{Step: st.step, Reason: reason, err: fmt.Errorf("step %d: %s; the run stopped without saving this state. Last good checkpoint: %s. %s",
		st.step, reason, last, hint)}
}

// firstCheckpoint makes sure a run that may restart has a checkpoint to roll back to.
func (st *runState) firstCheckpoint() error {
	if st.cfg.OnDivergence != "restart" || st.lastCkpt != "" {
		return nil
	}
	if err := st.checkpoint(false); err != nil {
		return fmt.Errorf("--on-divergence restart: the initial checkpoint: %w", err)
	}
	return nil
}

// restart rolls the run back to its last checkpoint after the divergence err, with the
// objective's generator re-seeded (new SGLD noise and buffer draws, as JEM's authors restarted
// with a new seed) and the lr scaled by --restart-lr-scale, or gives up after --max-restarts.
func (st *runState) restart(err error) error {
	var r *errRestart
	if !errors.As(err, &r) {
		return err
	}
	if st.div.restarts >= st.cfg.MaxRestarts {
		return &DivergedError{Step: r.step, Reason: r.reason, Restarts: st.div.restarts,
			err: fmt.Errorf("%w; it diverged %d times, after %d restarts (--max-restarts %d). Last good checkpoint: %s",
				r, st.div.restarts+1, st.div.restarts, st.cfg.MaxRestarts, st.lastCkpt)}
	}
	st.div.restarts++
	path := st.lastCkpt
	if err := st.restore(path); err != nil {
		return fmt.Errorf("%w; rolling back to %s: %w", r, path, err)
	}
	// A fresh stream for the objective, distinct from every other restart's and from the run's
	// other generators' seeds (seed+1, seed+2).
	seed := st.cfg.Seed + seedObjective + uint64(st.div.restarts)<<32
	fresh, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		return err
	}
	state, err := fresh.State()
	fresh.Close()
	if err == nil {
		err = st.gens["objective"].SetState(state)
	}
	if err != nil {
		return fmt.Errorf("re-seeding the objective's generator: %w", err)
	}
	st.div.lrScale = st.div.scale() * st.cfg.RestartLRScale
	rec := map[string]any{"step": st.step, "epoch": st.pos.Epoch, "event": "restart", "restart": st.div.restarts,
		"diverged_at_step": r.step, "reason": r.reason, "checkpoint": path, "lr_scale": st.div.scale(), "objective_seed": seed}
	if err := st.writeMetrics(rec); err != nil {
		return err
	}
	st.log.Warn("diverged: restarting from the last checkpoint", zap.Int("restart", st.div.restarts),
		zap.Int("max_restarts", st.cfg.MaxRestarts), zap.Int("diverged_at_step", r.step), zap.String("reason", r.reason),
		zap.String("checkpoint", path), zap.Int("step", st.step), zap.Float64("lr_scale", st.div.scale()))
	return nil
}

// trainWithRestarts is the loop, run again after each restart.
func (st *runState) trainWithRestarts(loop func() (*Summary, error)) (*Summary, error) {
	if err := st.firstCheckpoint(); err != nil {
		return nil, err
	}
	for {
		sum, err := loop()
		var r *errRestart
		if !errors.As(err, &r) {
			return sum, err
		}
		if err := st.restart(err); err != nil {
			return sum, err
		}
	}
}

// divergedSummary writes summary.json for a run that ended by divergence after validating at least
// once (it has a best.pt): its steps are those reached, its checkpoint the best one. Without a
// best.pt there is nothing worth evaluating, and nothing is written.
func (st *runState) divergedSummary(de *DivergedError) (*Summary, error) {
	best := filepath.Join(model.CheckpointDir(st.cfg.Out), "best.pt")
	if _, err := os.Stat(best); err != nil {
		return nil, nil
	}
	sum := &Summary{RunDir: st.cfg.Out, Steps: de.Step, Epochs: st.pos.Epoch, BestValAcc: st.bestVal, Precision: st.prec.String(),
		Layout: st.model.Layout.String(), Checkpoint: best, Diverged: &Divergence{Step: de.Step, Reason: de.Reason, Restarts: de.Restarts}}
	if err := writeJSON(filepath.Join(st.cfg.Out, "summary.json"), sum); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	return sum, nil
}
