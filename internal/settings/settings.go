package settings

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// Kind says what a setting changes.
type Kind int

const (
	// Learnt settings change what a run learns: they are fixed when a run is resumed, and they
	// tell the runs of an experiment apart.
	Learnt Kind = iota
	// Length settings say how long a run trains: a resumed run may be given another length.
	Length
	// Operational settings change how or where a run works (threads, paths, logging, layout),
	// not what it learns: free to change on resume, left out of result tables.
	Operational
)

// Setting is one declared setting of a config type C.
type Setting[C any] struct {
	Name  string // the flag's name, also the key in experiment specs
	Group string // the flag's category in --help
	Usage string
	Kind  Kind
	// Deprecated, when set, is the warning a user gets for using this name.
	Deprecated string

	def   any
	get   func(*C) any
	set   func(*C, any) error
	check func(*C) error
	flag  func(def any) cli.Flag
}

// Default is the declared default value.
func (s Setting[C]) Default() any { return s.def }

// Get is the setting's value in c.
func (s Setting[C]) Get(c *C) any { return s.get(c) }

// Check is a validation of one value: nil, or what is wrong, without the setting's name.
type Check[T any] func(T) error

// String declares a string setting. values, when given, are the only accepted ones.
func String[C any](name, group string, kind Kind, def string, usage string, field func(*C) *string, checks ...Check[string]) Setting[C] {
	return Setting[C]{Name: name, Group: group, Kind: kind, Usage: usage, def: def,
		get: func(c *C) any { return *field(c) },
		set: func(c *C, v any) error {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("want a string, got %s", Describe(v))
			}
			*field(c) = s
			return nil
		},
		check: checkAll(field, checks),
		flag: func(def any) cli.Flag {
			return &cli.StringFlag{Name: name, Value: def.(string), Category: group, Usage: usage}
		},
	}
}

// Canonical wraps a string setting so that a value is stored as canon(value): an old name of a
// choice is read as its current one everywhere a value enters (flags, specs, old configs).
func Canonical[C any](st Setting[C], canon func(string) string) Setting[C] {
	set := st.set
	st.set = func(c *C, v any) error {
		if s, ok := v.(string); ok {
			v = canon(s)
		}
		return set(c, v)
	}
	return st
}

// Float declares a float64 setting.
func Float[C any](name, group string, kind Kind, def float64, usage string, field func(*C) *float64, checks ...Check[float64]) Setting[C] {
	return Setting[C]{Name: name, Group: group, Kind: kind, Usage: usage, def: def,
		get: func(c *C) any { return *field(c) },
		set: func(c *C, v any) error {
			f, err := Number(v)
			if err != nil {
				return err
			}
			*field(c) = f
			return nil
		},
		check: checkAll(field, checks),
		flag: func(def any) cli.Flag {
			return &cli.Float64Flag{Name: name, Value: def.(float64), Category: group, Usage: usage}
		},
	}
}

// Int declares an int setting.
func Int[C any](name, group string, kind Kind, def int, usage string, field func(*C) *int, checks ...Check[int]) Setting[C] {
	return Setting[C]{Name: name, Group: group, Kind: kind, Usage: usage, def: def,
		get: func(c *C) any { return *field(c) },
		set: func(c *C, v any) error {
			n, err := Integer(v)
			if err != nil {
				return err
			}
			*field(c) = n
			return nil
		},
		check: checkAll(field, checks),
		flag: func(def any) cli.Flag {
			return &cli.IntFlag{Name: name, Value: def.(int), Category: group, Usage: usage}
		},
	}
}

// Uint64 declares a uint64 setting (seeds).
func Uint64[C any](name, group string, kind Kind, def uint64, usage string, field func(*C) *uint64) Setting[C] {
	return Setting[C]{Name: name, Group: group, Kind: kind, Usage: usage, def: def,
		get: func(c *C) any { return *field(c) },
		set: func(c *C, v any) error {
			switch x := v.(type) {
			case uint64:
				*field(c) = x
				return nil
			case json.Number:
				u, err := strconv.ParseUint(x.String(), 10, 64)
				if err != nil {
					return fmt.Errorf("want a whole number ≥ 0, got %s", x)
				}
				*field(c) = u
				return nil
			}
			n, err := Integer(v)
			if err != nil {
				return err
			}
			if n < 0 {
				return fmt.Errorf("want a whole number ≥ 0, got %d", n)
			}
			*field(c) = uint64(n)
			return nil
		},
		check: func(*C) error { return nil },
		flag: func(def any) cli.Flag {
			return &cli.Uint64Flag{Name: name, Value: def.(uint64), Category: group, Usage: usage}
		},
	}
}

// Bool declares a boolean setting; on the command line --name=false turns it off.
func Bool[C any](name, group string, kind Kind, def bool, usage string, field func(*C) *bool) Setting[C] {
	return Setting[C]{Name: name, Group: group, Kind: kind, Usage: usage, def: def,
		get: func(c *C) any { return *field(c) },
		set: func(c *C, v any) error {
			b, ok := v.(bool)
			if !ok {
				return fmt.Errorf("want true or false, got %s", Describe(v))
			}
			*field(c) = b
			return nil
		},
		check: func(*C) error { return nil },
		flag: func(def any) cli.Flag {
			return &cli.BoolFlag{Name: name, Value: def.(bool), Category: group, Usage: usage}
		},
	}
}

// AutoBool declares a setting of "auto", "true" or "false", kept as a string (S is a string type of
// the caller's): auto leaves the choice to the program, the other two force it. The bools true
// and false (what a Bool setting held before it gained auto, in old configs and specs) read as
// "true" and "false". On the command line it takes a value, --name=true or --name auto; a bare
// --name would take the next argument as its value, and the error says to write --name=true.
func AutoBool[C any, S ~string](name, group string, kind Kind, def S, usage string, field func(*C) *S) Setting[C] {
	return Setting[C]{Name: name, Group: group, Kind: kind, Usage: usage, def: string(def),
		get: func(c *C) any { return string(*field(c)) },
		set: func(c *C, v any) error {
			switch x := v.(type) {
			case bool:
				*field(c) = S(strconv.FormatBool(x))
			case string:
				*field(c) = S(x)
			default:
				return fmt.Errorf("want auto, true or false, got %s", Describe(v))
			}
			return nil
		},
		check: func(c *C) error {
			switch v := string(*field(c)); v {
			case "auto", "true", "false":
				return nil
			default:
				if strings.HasPrefix(v, "-") {
					return fmt.Errorf("takes a value, and took the next argument %q: write --%s=true (or auto, false)", v, name)
				}
				return fmt.Errorf("unknown value %q (want auto, true or false)", v)
			}
		},
		flag: func(def any) cli.Flag {
			return &cli.StringFlag{Name: name, Value: def.(string), Category: group, Usage: usage}
		},
	}
}

// Ints declares a list of whole numbers ≥ 0, given on the command line as "160,180" and in a
// spec as [160, 180] or "160,180".
func Ints[C any](name, group string, kind Kind, def []int, usage string, field func(*C) *[]int) Setting[C] {
	return Setting[C]{Name: name, Group: group, Kind: kind, Usage: usage, def: slices.Clone(def),
		get: func(c *C) any { return slices.Clone(*field(c)) },
		set: func(c *C, v any) error {
			out, err := intList(v)
			if err != nil {
				return err
			}
			*field(c) = out
			return nil
		},
		check: func(*C) error { return nil },
		flag: func(def any) cli.Flag {
			return &cli.StringFlag{Name: name, Value: JoinInts(def.([]int)), Category: group, Usage: usage}
		},
	}
}

func checkAll[C, T any](field func(*C) *T, checks []Check[T]) func(*C) error {
	return func(c *C) error {
		for _, ch := range checks {
			if err := ch(*field(c)); err != nil {
				return err
			}
		}
		return nil
	}
}

// OneOf accepts only the given values.
func OneOf(values ...string) Check[string] {
	return func(s string) error {
		if slices.Contains(values, s) {
			return nil
		}
		return fmt.Errorf("unknown value %q (want %s)", s, orList(values))
	}
}

// AtLeast accepts n ≥ lo.
func AtLeast(lo int) Check[int] {
	return func(n int) error {
		if n < lo {
			return fmt.Errorf("must be at least %d, got %d", lo, n)
		}
		return nil
	}
}

// In accepts lo ≤ x ≤ hi, or lo ≤ x < hi when open; the message states the interval.
func In(lo, hi float64, open bool) Check[float64] {
	return func(x float64) error {
		if x >= lo && (x < hi || (!open && x == hi)) {
			return nil
		}
		r := "]"
		if open {
			r = ")"
		}
		return fmt.Errorf("must be in [%g, %g%s, got %g", lo, hi, r, x)
	}
}

// Positive accepts x > 0.
func Positive(x float64) error {
	if x > 0 {
		return nil
	}
	return fmt.Errorf("must be > 0, got %g", x)
}

// NonNegative accepts x ≥ 0.
func NonNegative(x float64) error {
	if x >= 0 {
		return nil
	}
	return fmt.Errorf("must be >= 0, got %g", x)
}

func orList(v []string) string {
	switch len(v) {
	case 0:
		return "nothing"
	case 1:
		return v[0]
	}
	return strings.Join(v[:len(v)-1], ", ") + " or " + v[len(v)-1]
}

// Table is a command's declared settings, in --help order.
type Table[C any] []Setting[C]

// Lookup finds a setting by name.
func (t Table[C]) Lookup(name string) (Setting[C], bool) {
	for _, s := range t {
		if s.Name == name {
			return s, true
		}
	}
	return Setting[C]{}, false
}

// Names lists the settings' names, sorted.
func (t Table[C]) Names() []string {
	out := make([]string, len(t))
	for i, s := range t {
		out[i] = s.Name
	}
	slices.Sort(out)
	return out
}

// Apply sets every declared setting of c to its default.
func (t Table[C]) Apply(c *C) {
	for _, s := range t {
		if err := s.set(c, s.def); err != nil {
			panic(fmt.Sprintf("settings: default of %s: %v", s.Name, err)) // a declaration bug, not user input
		}
	}
}

// Set gives the setting called name the value v, as encoding/json decodes it (a string, a bool,
// a float64 or json.Number; Go numbers work too). The type is checked here, the range by Validate.
func (t Table[C]) Set(c *C, name string, v any) error {
	s, ok := t.Lookup(name)
	if !ok {
		return fmt.Errorf("unknown option %q (want one of %s)", name, strings.Join(t.Names(), ", "))
	}
	if err := s.set(c, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Get is the value of the setting called name.
func (t Table[C]) Get(c *C, name string) (any, bool) {
	s, ok := t.Lookup(name)
	if !ok {
		return nil, false
	}
	return s.get(c), true
}

// Validate runs every setting's checks and names the flag of the first that fails.
func (t Table[C]) Validate(c *C) error {
	for _, s := range t {
		if err := s.check(c); err != nil {
			return fmt.Errorf("--%s: %w", s.Name, err)
		}
	}
	return nil
}

// Flags are the CLI flags, each with its declared default, group and help.
func (t Table[C]) Flags() []cli.Flag {
	out := make([]cli.Flag, len(t))
	for i, s := range t {
		out[i] = s.flag(s.def)
	}
	return out
}

// FromFlags sets c from the command line: every setting when only is nil (defaults included),
// else only the flags set on the command line that only accepts.
func (t Table[C]) FromFlags(ctx *cli.Context, c *C, only func(name string) bool) error {
	for _, s := range t {
		if only != nil && !(ctx.IsSet(s.Name) && only(s.Name)) {
			continue
		}
		if err := s.set(c, ctx.Value(s.Name)); err != nil {
			return fmt.Errorf("--%s: %w", s.Name, err)
		}
	}
	return nil
}

// Differences lists, as "--name A there, B here", the settings of the given kinds in which a
// and b differ; Labelled names the two sides otherwise.
func (t Table[C]) Differences(a, b *C, kinds ...Kind) []string {
	return t.Labelled(a, b, "there", "here", kinds...)
}

// Labelled is Differences with the words naming a's and b's side.
func (t Table[C]) Labelled(a, b *C, aSide, bSide string, kinds ...Kind) []string {
	var out []string
	for _, s := range t {
		if !slices.Contains(kinds, s.Kind) {
			continue
		}
		va, vb := s.get(a), s.get(b)
		if fmt.Sprint(va) != fmt.Sprint(vb) {
			out = append(out, fmt.Sprintf("--%s %s %s, %s %s", s.Name, Text(va), aSide, Text(vb), bSide))
		}
	}
	return out
}

// Text writes a value as a flag would take it.
func Text(v any) string {
	switch x := v.(type) {
	case []int:
		return JoinInts(x)
	case string:
		if x == "" {
			return `""`
		}
		return x
	}
	return fmt.Sprint(v)
}

// JoinInts writes a list as "160,180".
func JoinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func intList(v any) ([]int, error) {
	var out []int
	switch x := v.(type) {
	case string:
		for _, f := range strings.Split(x, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			e, err := strconv.Atoi(f)
			if err != nil || e < 0 {
				return nil, fmt.Errorf("%q is not a list of whole numbers ≥ 0 (want e.g. \"160,180\")", x)
			}
			out = append(out, e)
		}
	case []int:
		out = append(out, x...)
	case []any:
		for _, item := range x {
			e, err := Integer(item)
			if err != nil {
				return nil, fmt.Errorf("%s is not a list of whole numbers (want e.g. [160, 180])", Describe(v))
			}
			out = append(out, e)
		}
	default:
		return nil, fmt.Errorf("want a list such as [160, 180] or \"160,180\", got %s", Describe(v))
	}
	for _, e := range out {
		if e < 0 {
			return nil, fmt.Errorf("%d must be ≥ 0", e)
		}
	}
	return out, nil
}

// Number reads a finite number from what encoding/json (or a flag) produced.
func Number(v any) (float64, error) {
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
		return 0, fmt.Errorf("want a number, got %s", Describe(v))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("want a finite number, got %v", f)
	}
	return f, nil
}

// Integer reads a whole number.
func Integer(v any) (int, error) {
	if n, ok := v.(json.Number); ok {
		i, err := strconv.ParseInt(n.String(), 10, 0)
		if err != nil {
			return 0, fmt.Errorf("want a whole number, got %s", n)
		}
		return int(i), nil
	}
	f, err := Number(v)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("want a whole number, got %v", f)
	}
	return int(f), nil
}

// Describe names a value's JSON type for error messages.
func Describe(v any) string {
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
