package settings

import (
	"encoding/json"
	"strings"
	"testing"
)

type cfg struct {
	Name  string
	Rate  float64
	N     int
	On    bool
	Seed  uint64
	Steps []int
}

var table = Table[cfg]{
	Canonical(String("name", "g", Learnt, "a", "name", func(c *cfg) *string { return &c.Name }, OneOf("a", "b")),
		func(s string) string { return strings.Replace(s, "old-", "", 1) }),
	Float("rate", "g", Learnt, 0.5, "rate", func(c *cfg) *float64 { return &c.Rate }, In(0, 1, true)),
	Int("n", "g", Length, 3, "n", func(c *cfg) *int { return &c.N }, AtLeast(1)),
	Bool("on", "g", Operational, true, "on", func(c *cfg) *bool { return &c.On }),
	Uint64("seed", "g", Learnt, 1, "seed", func(c *cfg) *uint64 { return &c.Seed }),
	Ints("steps", "g", Learnt, []int{1, 2}, "steps", func(c *cfg) *[]int { return &c.Steps }),
}

func TestDefaultsSetValidate(t *testing.T) {
	var c cfg
	table.Apply(&c)
	if c.Name != "a" || c.Rate != 0.5 || c.N != 3 || !c.On || c.Seed != 1 || len(c.Steps) != 2 {
		t.Fatalf("defaults: %+v", c)
	}
	if err := table.Validate(&c); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"name": "old-b", "rate": json.Number("0.25"), "n": 7.0, "on": false,
		"seed": json.Number("18446744073709551615"), "steps": "160,180"} {
		if err := table.Set(&c, name, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if c.Name != "b" || c.Rate != 0.25 || c.N != 7 || c.On || c.Seed != 1<<64-1 || c.Steps[1] != 180 {
		t.Fatalf("after Set: %+v", c)
	}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"rate", "x", "rate: want a number"},
		{"n", 1.5, "n: want a whole number"},
		{"on", "yes", "on: want true or false"},
		{"steps", "1,x", "steps:"},
		{"nosuch", 1.0, `unknown option "nosuch"`},
	} {
		if err := table.Set(&c, tc.name, tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Set(%s, %v) = %v, want %q", tc.name, tc.v, err, tc.want)
		}
	}
	c.Rate = 1
	if err := table.Validate(&c); err == nil || !strings.HasPrefix(err.Error(), "--rate: must be in [0, 1)") {
		t.Errorf("Validate: %v", err)
	}
	c.Rate, c.Name = 0.1, "z"
	if err := table.Validate(&c); err == nil || !strings.Contains(err.Error(), `--name: unknown value "z" (want a or b)`) {
		t.Errorf("Validate: %v", err)
	}
}

func TestDifferencesByKind(t *testing.T) {
	var a cfg
	table.Apply(&a)
	b := a
	b.Rate, b.N, b.On = 0.1, 9, false
	d := table.Differences(&a, &b, Learnt)
	if len(d) != 1 || d[0] != "--rate 0.5 there, 0.1 here" {
		t.Fatalf("learnt differences %q", d)
	}
	if d := table.Differences(&a, &b, Length, Operational); len(d) != 2 {
		t.Fatalf("length and operational differences %q", d)
	}
}

func TestFlagsCarryDefaultsAndGroups(t *testing.T) {
	fs := table.Flags()
	if len(fs) != len(table) {
		t.Fatalf("%d flags for %d settings", len(fs), len(table))
	}
	if got := fs[5].String(); !strings.Contains(got, `"1,2"`) {
		t.Errorf("steps flag %q does not show its default", got)
	}
}

type layout string

type triCfg struct{ L layout }

// TestAutoBool: a tri-state takes auto, true and false as strings and, from old configs and
// specs, the bools; its flag takes a value, and a bare flag that swallowed the next argument is
// told to write --name=true.
func TestAutoBool(t *testing.T) {
	tri := Table[triCfg]{AutoBool("layout", "g", Operational, layout("auto"), "layout", func(c *triCfg) *layout { return &c.L })}
	var c triCfg
	tri.Apply(&c)
	if c.L != "auto" {
		t.Fatalf("default %q", c.L)
	}
	for _, tc := range []struct {
		v    any
		want layout
	}{{false, "false"}, {true, "true"}, {"false", "false"}, {"auto", "auto"}} {
		if err := tri.Set(&c, "layout", tc.v); err != nil || c.L != tc.want {
			t.Errorf("Set(%#v): %q, %v; want %q", tc.v, c.L, err, tc.want)
		}
		if err := tri.Validate(&c); err != nil {
			t.Errorf("Validate after Set(%#v): %v", tc.v, err)
		}
	}
	if err := tri.Set(&c, "layout", 1.0); err == nil || !strings.Contains(err.Error(), "want auto, true or false") {
		t.Errorf("Set(1): %v", err)
	}
	for v, want := range map[string]string{"maybe": `--layout: unknown value "maybe" (want auto, true or false)`,
		"--epochs": "write --layout=true"} {
		c.L = layout(v)
		if err := tri.Validate(&c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%q) = %v, want %q", v, err, want)
		}
	}
	if f := tri.Flags()[0].String(); !strings.Contains(f, `"auto"`) {
		t.Errorf("flag %q does not show its default", f)
	}
}
