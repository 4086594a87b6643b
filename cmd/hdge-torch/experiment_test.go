package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/trainer"
)

// TestTrainFlagsAreOptions: a spec's keys are the train command's flags, so every flag that is part
// of a run's config must be a trainer option and every option a flag.
func TestTrainFlagsAreOptions(t *testing.T) {
	var cliOnly []string // how the command runs (resume, logging, process launch), not part of a run's config
	for _, f := range cliOnlyTrainFlags {
		cliOnly = append(cliOnly, f.Names()[0])
	}
	var flags []string
	for _, f := range trainFlags() {
		name := f.Names()[0]
		flags = append(flags, name)
		if !slices.Contains(cliOnly, name) && !slices.Contains(trainer.OptionNames(), name) {
			t.Errorf("train flag --%s is not a trainer option, so a spec cannot set it", name)
		}
	}
	for _, o := range trainer.OptionNames() {
		if !slices.Contains(flags, o) {
			t.Errorf("trainer option %q is not a train flag", o)
		}
	}
}

func runApp(t *testing.T, args ...string) (int, string) {
	t.Helper()
	app := &cli.App{Name: "hdge-torch", Commands: []*cli.Command{experimentCommand()}, ExitErrHandler: func(*cli.Context, error) {}}
	err := app.RunContext(context.Background(), append([]string{"hdge-torch"}, args...))
	if err == nil {
		return 0, ""
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode(), err.Error()
	}
	return 1, err.Error()
}

func TestExperimentCLIErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"name": "x", "out": "`+filepath.Join(dir, "out")+`", "seeds": [1], "runs": [{"name": "ce", "set": {"objective": "ce"}}]}`)
	bad := write("bad.json", `{"name": "x", "out": "o", "seeds": [1], "runs": [{"name": "ce", "set": {"epoch": 1}}]}`)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"experiment", "run", bad}, 2, bad + `: runs[0] (ce): set: unknown option "epoch"`},
		{[]string{"experiment", "aggregate", bad}, 2, `unknown option "epoch"`},
		{[]string{"experiment", "run"}, 2, "needs one spec file"},
		{[]string{"experiment", "run", good, "--only", "ce"}, 2, "flags go before the spec file"},
		{[]string{"experiment", "run", "--jobs", "0", good}, 2, "--jobs must be at least 1"},
		{[]string{"experiment", "run", filepath.Join(dir, "nope.json")}, 2, "nope.json"},
		{[]string{"experiment", "run", "--only", "hdge", good}, 2, `--only: no run is named "hdge"`},
		{[]string{"experiment", "run", "--seeds", "1,x", good}, 2, `--seeds: "x" is not a seed`},
		{[]string{"experiment", "run", "--seeds", "2", good}, 2, "--seeds: 2 is not among the spec's seeds"},
		{[]string{"experiment", "aggregate", good}, 0, ""},
	} {
		code, msg := runApp(t, c.args...)
		if code != c.code || !strings.Contains(msg, c.want) {
			t.Errorf("%v: exit %d %q, want %d with %q", c.args, code, msg, c.code, c.want)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "out", "results.md"))
	if err != nil || !strings.Contains(string(md), "0 of 1 runs × seeds are done") {
		t.Errorf("aggregate of an experiment not started: %v\n%s", err, md)
	}
}
