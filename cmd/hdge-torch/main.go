// Command hdge-torch trains and evaluates image classifiers with Hybrid Discriminative-Generative
// training (HDGE) over libtorch.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/urfave/cli/v2"
)

// exitInterrupted is the conventional status of a program stopped by SIGINT.
const exitInterrupted = 130

func main() {
	torch.TuneMalloc()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &cli.App{
		Name:  "hdge-torch",
		Usage: "train and evaluate classifiers with hybrid discriminative-generative training (HDGE) on libtorch",
		Commands: []*cli.Command{
			trainCommand(),
			evalCommand(),
			sampleCommand(),
			experimentCommand(),
			compareCommand(),
			scoreCommand(),
			exportCommand(),
			dataCommand(),
			versionCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // errors are printed once, below
	}
	if err := app.RunContext(ctx, os.Args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, "hdge-torch:", msg)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "hdge-torch:", err)
		os.Exit(1)
	}
}
