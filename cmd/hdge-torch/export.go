package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/model"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write a checkpoint in another program's layout: --format released for the HDGE/JEM authors' code",
		Description: `--format released writes {"model_state_dict": F's state dict, "replay_buffer": ...} as the
authors' eval_wrn.py (HDGE) and eval_wrn_ebm.py (JEM) load it: the trunk as f.*, the head as
class_output.*, HDGE's queue as queue_logit/queue_ptr, JEM's replay buffer (a run without one gets
the buffer JEM starts from, uniform noise, since eval_wrn_ebm.py reads it on load).
eval --checkpoint and score --checkpoint read such a file back.

Example: hdge-torch export --checkpoint runs/cifar10-hdge --format released --out hdge-wrn.pt`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoint", Usage: "run directory (its best.pt, else newest checkpoint) or checkpoint file"},
			&cli.StringFlag{Name: "format", Value: "released", Usage: "released (the only format so far)"},
			&cli.StringFlag{Name: "out", Usage: "file to write"},
		},
		Action: func(c *cli.Context) error {
			switch {
			case c.NArg() > 0:
				return cli.Exit(fmt.Sprintf("export takes no arguments, got %q (flags start with --)", c.Args().First()), 2)
			case c.String("checkpoint") == "":
				return cli.Exit("export needs --checkpoint RUN_OR_FILE", 2)
			case c.String("format") != "released":
				return cli.Exit(fmt.Sprintf("--format: unknown format %q (want released)", c.String("format")), 2)
			case c.String("out") == "":
				return cli.Exit("export needs --out FILE", 2)
			}
			if _, err := os.Stat(c.String("checkpoint")); err != nil {
				return cli.Exit(fmt.Sprintf("--checkpoint: %v", err), 2)
			}
			ex, err := model.ExportReleased(c.String("checkpoint"), c.String("out"))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			extra := ""
			if ex.Queue {
				extra += ", queue"
			}
			if ex.Buffer {
				extra += ", replay buffer"
			} else {
				extra += fmt.Sprintf(", no replay buffer in the run: JEM's fresh one (%d uniform images in [-1, 1]) for eval_wrn_ebm.py", model.FreshBufferSize)
			}
			fmt.Printf("%s (%s, %d state dict entries%s) -> %s\n", ex.Checkpoint, ex.Model, ex.Keys, extra, c.String("out"))
			return nil
		},
	}
}
