package trainer

import "github.com/hdge-torch/hdge-torch/internal/settings"

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

// Differences lists, by flag, the settings that change what is learnt in which a and b differ.
func Differences(a, b Config) []string { return Settings().Differences(&a, &b, settings.Learnt) }
