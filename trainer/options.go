package trainer

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/internal/settings"
)

// OptionNames lists the names SetOption accepts: the train command's flags that are part of a
// run's Config, sorted.
func OptionNames() []string { return Settings().Names() }

// SetOption sets the Config field of the train flag called name. value is what encoding/json
// decodes: a string, a bool, a float64 or json.Number (Go ints work too); decay-epochs also takes
// a list of numbers or "160,180". The value's type is checked, its range is left to Validate.
func SetOption(cfg *Config, name string, value any) error { return Settings().Set(cfg, name, value) }

// OptionKind says whether a setting changes what a run learns, only its length, or neither.
func OptionKind(name string) (settings.Kind, bool) {
	s, ok := Settings().Lookup(name)
	return s.Kind, ok
}

// Differences lists, by flag, the settings that change what is learnt in which a run folder's
// config (a) and a spec's (b) differ.
func Differences(a, b Config) []string {
	return Settings().Labelled(&a, &b, "there", "in the spec", settings.Learnt)
}

// regimes are the named starting points of a run's settings: every flag set on the command line
// still overrides them. "cpu" is Defaults, tuned for a CPU (batch norm, Adam 1e-3, a 200-step
// warm-up). "paper" is the set-up of JEM that the paper's OOD, calibration, generation and
// robustness results use: no batch norm, Adam 1e-4 with a 1000-step warm-up, σ 0.03, batch 64
// (the cosine decay is kept; JEM's step decay at epochs 160 and 180 of 200 is --schedule step
// --decay-epochs 160,180).
var regimes = map[string]map[string]any{
	"cpu":   {},
	"paper": {"norm": "none", "optimizer": "adam", "lr": 1e-4, "warmup": 1000, "noise": 0.03, "batch-size": 64, "dropout": 0.0},
}

// Regime is Defaults with a regime's settings applied.
func Regime(name string) (Config, error) {
	set, ok := regimes[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown value %q (want cpu or paper)", name)
	}
	c := Defaults()
	for k, v := range set {
		if err := SetOption(&c, k, v); err != nil {
			return Config{}, fmt.Errorf("%s: %w", k, err)
		}
	}
	return c, nil
}
