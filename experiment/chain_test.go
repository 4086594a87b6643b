package experiment

import (
	"strings"
	"testing"
)

const chainSpec = `{"name": "chain", "out": "OUT", "seeds": [1, 2],
  "base": {"model": "wrn-10-1"},
  "runs": [
    {"name": "pre", "set": {"objective": "simclr"}},
    {"name": "probe", "set": {"objective": "ce", "init": "{run:pre}", "freeze-features": true}},
    {"name": "file", "set": {"objective": "ce", "init": "ckpts/seed-{seed}.pt"}}
  ]}`

// TestInitNamesAnotherRun: "init": "{run:NAME}" is NAME's folder for the same seed, "{seed}" the
// seed; selecting stage 2 alone selects its stage 1 too, listed first; a forward or unknown
// reference is refused naming the run.
func TestInitNamesAnotherRun(t *testing.T) {
	s, err := Parse([]byte(chainSpec))
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{1, 2} {
		c, err := s.Config("probe", seed)
		if err != nil {
			t.Fatal(err)
		}
		if c.Init != s.RunDir("pre", seed) || !c.FreezeFeatures {
			t.Errorf("seed %d: init %q, want %q", seed, c.Init, s.RunDir("pre", seed))
		}
	}
	if c, _ := s.Config("file", 2); c.Init != "ckpts/seed-2.pt" {
		t.Errorf("{seed}: init %q", c.Init)
	}
	units, err := s.Units([]string{"probe"}, []uint64{2})
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != 2 || units[0].Run != "pre" || units[1].Run != "probe" || units[1].needs != units[0].Dir {
		t.Errorf("units for --only probe: %+v, want pre then probe, probe needing pre", units)
	}
	for _, bad := range []string{
		strings.Replace(chainSpec, `"init": "{run:pre}"`, `"init": "{run:file}"`, 1),
		strings.Replace(chainSpec, `"init": "{run:pre}"`, `"init": "{run:nosuch}"`, 1),
	} {
		if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "runs[1] (probe)") || !strings.Contains(err.Error(), "listed before") {
			t.Errorf("forward or unknown {run:...}: %v", err)
		}
	}
}
