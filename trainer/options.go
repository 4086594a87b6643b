package trainer

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// option sets one Config field from a loosely typed value, as decoded from JSON.
type option func(c *Config, v any) error

// options maps the train command's flag names to Config fields, so a file that configures runs
// (an experiment spec) reads like the command lines it stands for.
var options = map[string]option{
	"dataset":         strOpt(func(c *Config) *string { return &c.Dataset }),
	"data-dir":        strOpt(func(c *Config) *string { return &c.DataDir }),
	"val-size":        intOpt(func(c *Config) *int { return &c.ValSize }),
	"noise":           floatOpt(func(c *Config) *float64 { return &c.Noise }),
	"flip":            strOpt(func(c *Config) *string { return &c.Flip }),
	"crop":            intOpt(func(c *Config) *int { return &c.Crop }),
	"workers":         intOpt(func(c *Config) *int { return &c.Workers }),
	"model":           strOpt(func(c *Config) *string { return &c.Model }),
	"norm":            strOpt(func(c *Config) *string { return &c.Norm }),
	"dropout":         floatOpt(func(c *Config) *float64 { return &c.Dropout }),
	"objective":       strOpt(func(c *Config) *string { return &c.Objective }),
	"alpha":           floatOpt(func(c *Config) *float64 { return &c.Alpha }),
	"queue-size":      intOpt(func(c *Config) *int { return &c.QueueSize }),
	"temperature":     floatOpt(func(c *Config) *float64 { return &c.Temperature }),
	"contrast":        strOpt(func(c *Config) *string { return &c.Contrast }),
	"norm-logits":     boolOpt(func(c *Config) *bool { return &c.NormLogits }),
	"label-smoothing": floatOpt(func(c *Config) *float64 { return &c.LabelSmoothing }),
	"optimizer":       strOpt(func(c *Config) *string { return &c.Optimizer }),
	"lr":              floatOpt(func(c *Config) *float64 { return &c.LR }),
	"momentum":        floatOpt(func(c *Config) *float64 { return &c.Momentum }),
	"weight-decay":    floatOpt(func(c *Config) *float64 { return &c.WeightDecay }),
	"warmup":          intOpt(func(c *Config) *int { return &c.Warmup }),
	"channels-last":   boolOpt(func(c *Config) *bool { return &c.ChannelsLast }),
	"schedule":        strOpt(func(c *Config) *string { return &c.Schedule }),
	"decay-epochs":    setDecayEpochs,
	"decay-rate":      floatOpt(func(c *Config) *float64 { return &c.DecayRate }),
	"batch-size":      intOpt(func(c *Config) *int { return &c.BatchSize }),
	"epochs":          intOpt(func(c *Config) *int { return &c.Epochs }),
	"steps":           intOpt(func(c *Config) *int { return &c.Steps }),
	"seed":            setSeed,
	"threads":         intOpt(func(c *Config) *int { return &c.Threads }),
	"device":          strOpt(func(c *Config) *string { return &c.Device }),
	"out":             strOpt(func(c *Config) *string { return &c.Out }),
	"keep-last":       intOpt(func(c *Config) *int { return &c.KeepLast }),
	"ckpt-every":      intOpt(func(c *Config) *int { return &c.CkptEvery }),
	"val-every":       intOpt(func(c *Config) *int { return &c.ValEvery }),
	"log-every":       intOpt(func(c *Config) *int { return &c.LogEvery }),
}

// OptionNames lists the names SetOption accepts: the train command's flags that are part of a
// run's Config, sorted.
func OptionNames() []string {
	names := make([]string, 0, len(options))
	for n := range options {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// SetOption sets the Config field of the train flag called name. value is what encoding/json
// decodes: a string, a bool, a float64 or json.Number (Go ints work too); decay-epochs also takes
// a list of numbers or "160,180". The value's type is checked, its range is left to Validate.
func SetOption(cfg *Config, name string, value any) error {
	set, ok := options[name]
	if !ok {
		return fmt.Errorf("unknown option %q (want one of %s)", name, strings.Join(OptionNames(), ", "))
	}
	if err := set(cfg, value); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func strOpt(field func(*Config) *string) option {
	return func(c *Config, v any) error {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a string, got %s", describe(v))
		}
		*field(c) = s
		return nil
	}
}

func boolOpt(field func(*Config) *bool) option {
	return func(c *Config, v any) error {
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("want true or false, got %s", describe(v))
		}
		*field(c) = b
		return nil
	}
}

func floatOpt(field func(*Config) *float64) option {
	return func(c *Config, v any) error {
		f, err := number(v)
		if err != nil {
			return err
		}
		*field(c) = f
		return nil
	}
}

func intOpt(field func(*Config) *int) option {
	return func(c *Config, v any) error {
		n, err := integer(v)
		if err != nil {
			return err
		}
		*field(c) = n
		return nil
	}
}

func setSeed(c *Config, v any) error {
	if n, ok := v.(json.Number); ok {
		u, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number ≥ 0, got %s", n)
		}
		c.Seed = u
		return nil
	}
	n, err := integer(v)
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("want a whole number ≥ 0, got %d", n)
	}
	c.Seed = uint64(n)
	return nil
}

func setDecayEpochs(c *Config, v any) error {
	var out []int
	switch x := v.(type) {
	case string:
		for _, f := range strings.Split(x, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			e, err := strconv.Atoi(f)
			if err != nil || e < 0 {
				return fmt.Errorf("%q is not a list of epochs (want e.g. \"160,180\")", x)
			}
			out = append(out, e)
		}
	case []int:
		out = append(out, x...)
	case []any:
		for _, item := range x {
			e, err := integer(item)
			if err != nil || e < 0 {
				return fmt.Errorf("%s is not a list of epochs (want e.g. [160, 180])", describe(v))
			}
			out = append(out, e)
		}
	default:
		return fmt.Errorf("want a list of epochs such as [160, 180] or \"160,180\", got %s", describe(v))
	}
	for _, e := range out {
		if e < 0 {
			return fmt.Errorf("epoch %d must be ≥ 0", e)
		}
	}
	c.DecayEpochs = out
	return nil
}

func number(v any) (float64, error) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, fmt.Errorf("want a number, got %s", x)
		}
	default:
		return 0, fmt.Errorf("want a number, got %s", describe(v))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("want a finite number, got %v", f)
	}
	return f, nil
}

func integer(v any) (int, error) {
	if n, ok := v.(json.Number); ok {
		i, err := strconv.ParseInt(n.String(), 10, 0)
		if err != nil {
			return 0, fmt.Errorf("want a whole number, got %s", n)
		}
		return int(i), nil
	}
	f, err := number(v)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("want a whole number, got %v", f)
	}
	return int(f), nil
}

// describe names a value's JSON type for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case float64, json.Number, int:
		return fmt.Sprintf("the number %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}
