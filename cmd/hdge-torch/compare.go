package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/eval/compare"
)

func compareCommand() *cli.Command {
	return &cli.Command{
		Name:      "compare",
		Usage:     "put evaluations side by side in one HTML page (mean ± std over an experiment's seeds)",
		ArgsUsage: "RUN_OR_EVAL... --out DIR",
		Description: "Each argument is an evaluation folder (eval --out), a training run with an eval/ folder, one run of an\n" +
			"experiment (seed-N/eval below it) or an experiment's output folder (one entry per run). Writes\n" +
			"DIR/" + compare.PageFile + " with the figures embedded, and each figure as a PNG beside it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "output folder for " + compare.PageFile + " and the PNGs"},
		},
		Action: func(c *cli.Context) error {
			out, args, err := splitOut(c.String("out"), c.Args().Slice())
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if len(args) == 0 {
				return cli.Exit("compare needs one or more evaluation, run or experiment folders", 2)
			}
			runs, err := compare.Resolve(args)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			pg, err := compare.Build(runs)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if err := pg.Write(out); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			fmt.Println(filepath.Join(out, compare.PageFile))
			return nil
		},
	}
}

// splitOut takes --out from after the folders too, since the flag parser stops at the first
// argument and "compare A B --out DIR" is the natural order.
func splitOut(out string, args []string) (string, []string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--out" || a == "-out":
			if i+1 >= len(args) {
				return "", nil, fmt.Errorf("--out needs a folder")
			}
			out = args[i+1]
			i++
		case strings.HasPrefix(a, "--out="):
			out = strings.TrimPrefix(a, "--out=")
		case strings.HasPrefix(a, "-"):
			return "", nil, fmt.Errorf("compare: unknown flag %s", a)
		default:
			rest = append(rest, a)
		}
	}
	if out == "" {
		return "", nil, fmt.Errorf("compare needs --out DIR")
	}
	return out, rest, nil
}
