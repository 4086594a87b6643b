package trainer

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSetOptionCoversConfig: every Config field is reachable through exactly one option name, and
// each option changes only its own field.
func TestSetOptionCoversConfig(t *testing.T) {
	typ := reflect.TypeOf(Config{})
	covered := map[string]string{}
	for _, name := range OptionNames() {
		c := Defaults()
		// Try each kind of value in turn; exactly one kind is accepted by a field.
		var err error
		for _, v := range []any{"zz", !reflect.ValueOf(c).FieldByName("NormLogits").Bool(), json.Number("7"), []any{3.0, 5.0}} {
			if name == "norm-logits" {
				v = !c.NormLogits
			}
			// A boolean option is tried with the opposite of its default (--sgld-cond is off).
			if cur, ok := Settings().Get(&c, name); ok {
				if on, isBool := cur.(bool); isBool {
					if _, tryBool := v.(bool); tryBool {
						v = !on
					}
				}
			}
			if err = SetOption(&c, name, v); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("%s: no value accepted: %v", name, err)
			continue
		}
		a, b := reflect.ValueOf(Defaults()), reflect.ValueOf(c)
		var changed []string
		for _, f := range leafFields(typ) {
			if !reflect.DeepEqual(a.FieldByIndex(f.Index).Interface(), b.FieldByIndex(f.Index).Interface()) {
				changed = append(changed, f.Name)
			}
		}
		if len(changed) != 1 {
			t.Errorf("%s changed fields %v, want exactly one", name, changed)
			continue
		}
		if prev, dup := covered[changed[0]]; dup {
			t.Errorf("%s and %s both set %s", prev, name, changed[0])
		}
		covered[changed[0]] = name
		// The option's name is the field's JSON key with dashes, so config.json reads the same way.
		f, _ := typ.FieldByName(changed[0])
		tag := strings.Split(f.Tag.Get("json"), ",")[0]
		if strings.ReplaceAll(tag, "_", "-") != name {
			t.Errorf("option %s sets %s (json %q)", name, changed[0], tag)
		}
	}
	for _, f := range leafFields(typ) {
		if _, ok := covered[f.Name]; !ok {
			t.Errorf("Config.%s has no option", f.Name)
		}
	}
}

// leafFields are a struct's fields with those of embedded sections (objectives' settings) in
// their place, as encoding/json flattens them.
func leafFields(t reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for _, f := range reflect.VisibleFields(t) {
		if !f.Anonymous {
			out = append(out, f)
		}
	}
	return out
}

func fieldIndex(t reflect.Type, name string) int {
	f, _ := t.FieldByName(name)
	return f.Index[0]
}

func TestSetOptionValues(t *testing.T) {
	c := Defaults()
	for name, v := range map[string]any{"epochs": 3.0, "lr": json.Number("0.0005"), "queue-size": 1024, "seed": json.Number("18446744073709551615"),
		"decay-epochs": "10, 13", "contrast": "eq13", "norm-logits": false} {
		if err := SetOption(&c, name, v); err != nil {
			t.Fatalf("SetOption(%s, %v): %v", name, v, err)
		}
	}
	if c.Epochs != 3 || c.LR != 0.0005 || c.QueueSize != 1024 || c.Seed != 1<<64-1 || !slices.Equal(c.DecayEpochs, []int{10, 13}) ||
		c.Contrast != "eq13" || c.NormLogits {
		t.Errorf("config after SetOption: %+v", c)
	}
	for _, bad := range []struct {
		name string
		v    any
		want string
	}{
		{"epoch", 2.0, `unknown option "epoch"`},
		{"epochs", 2.5, "epochs: want a whole number"},
		{"epochs", "2", `epochs: want a number, got the string "2"`},
		{"lr", true, "lr: want a number"},
		{"model", 10.0, "model: want a string"},
		{"norm-logits", "false", "norm-logits: want true or false"},
		{"decay-epochs", "10,x", "decay-epochs:"},
		{"decay-epochs", []any{-1.0}, "decay-epochs:"},
		{"seed", -1.0, "seed: want a whole number ≥ 0"},
		{"alpha", nil, "alpha: want a number, got null"},
	} {
		err := SetOption(&c, bad.name, bad.v)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("SetOption(%s, %v) = %v, want an error containing %q", bad.name, bad.v, err, bad.want)
		}
	}
}

// TestRenamedObjectiveStillWorks: the old name hdge-simclr is read as hdge-inbatch from flags,
// specs and old config files alike, so a spec naming it matches the runs it made.
func TestRenamedObjectiveStillWorks(t *testing.T) {
	c := Defaults()
	if err := SetOption(&c, "objective", "hdge-simclr"); err != nil {
		t.Fatal(err)
	}
	if c.Objective != "hdge-inbatch" {
		t.Fatalf("objective %q, want hdge-inbatch", c.Objective)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	old, err := ParseConfig([]byte(`{"objective": "hdge-simclr", "schedule": "step"}`))
	if err != nil || old.Objective != "hdge-inbatch" {
		t.Fatalf("old config: %q, %v", old.Objective, err)
	}
	if _, warning, ok := DeprecatedObjective("hdge-simclr"); !ok || !strings.Contains(warning, "hdge-inbatch") {
		t.Fatalf("no deprecation warning: %q", warning)
	}
	if err := SetOption(&c, "objective", "nosuch"); err != nil {
		t.Fatal(err) // the type is right; the name is Validate's to refuse
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "hdge-inbatch") {
		t.Fatalf("unknown objective error %v should list the known ones", err)
	}
}
