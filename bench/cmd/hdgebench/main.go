// Command hdgebench runs hdge-torch's benchmark against the PyTorch reference (bench/reference.py)
// and writes a markdown report and JSON results. `make bench` runs it; `make bench-quick` runs
// every code path on tiny inputs.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/bench"
	"github.com/hdge-torch/hdge-torch/torch"
)

func main() {
	torch.TuneMalloc()
	bench.ChildMain()
	app := &cli.App{
		Name:  "hdgebench",
		Usage: "hdge-torch against the PyTorch reference on the same libtorch, side by side",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "only", Usage: "run only these sections: " + strings.Join(bench.Sections, ", ")},
			&cli.BoolFlag{Name: "quick", Usage: "tiny inputs and one repetition: checks every code path in a few minutes"},
			&cli.StringFlag{Name: "precision", Value: "fp32", Usage: "fp32, or bf16 on both sides (hdge-torch --precision bf16; the reference under torch.autocast): needs a CPU with AMX or AVX512-BF16, or a GPU"},
			&cli.StringFlag{Name: "out", Value: "bench/results.md", Usage: "markdown report (\"\" to skip)"},
			&cli.StringFlag{Name: "json", Value: "bench/results.json", Usage: "JSON results (\"\" to skip)"},
			&cli.StringFlag{Name: "work", Value: "bench/out", Usage: "scratch folder (prepared data, run folders)"},
			&cli.IntFlag{Name: "reps", Usage: "repetitions of training, pipeline and evaluation runs (0: the suite's)"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N, for both sides"},
			&cli.IntFlag{Name: "threads", Usage: "libtorch intra-op threads on both sides (0: every core)"},
			&cli.IntFlag{Name: "workers", Value: 2, Usage: "data loader workers on both sides"},
			&cli.StringFlag{Name: "fashion-model", Usage: "model for Fashion-MNIST, the step ratio and evaluation (default: the trainer's CPU default)"},
			&cli.StringFlag{Name: "cifar-model", Usage: "model for CIFAR-10 (default wrn-16-4; wrn-28-10 on a GPU)"},
			&cli.StringFlag{Name: "fashion-norm", Usage: "none or batch for the Fashion-MNIST model (default: the CPU default's)"},
			&cli.StringFlag{Name: "cifar-norm", Usage: "none or batch for the CIFAR-10 model (default none, as the released code)"},
			&cli.StringFlag{Name: "shared-data", Usage: "folder with cifar-10-batches-bin/ and mnist/ (default $HDGE_SHARED_DATA or ../shared/data beside the repository)"},
			&cli.StringFlag{Name: "fashion-dir", Value: "/usr/share/datasets/fashion-mnist", Usage: "Fashion-MNIST IDX files"},
			&cli.StringFlag{Name: "python", Value: "/usr/bin/python3", Usage: "the Python with torch, numpy and scikit-learn"},
		},
		Action: run,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "hdgebench:", err)
		os.Exit(1)
	}
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit("hdgebench takes no arguments, got "+strings.Join(c.Args().Slice(), " "), 2)
	}
	shared := c.String("shared-data")
	if shared == "" {
		shared = os.Getenv("HDGE_SHARED_DATA")
	}
	if shared == "" {
		root, err := repoRoot()
		if err != nil {
			return cli.Exit("--shared-data: "+err.Error(), 2)
		}
		shared = filepath.Join(root, "..", "shared", "data")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := bench.Run(ctx, bench.Options{
		Quick: c.Bool("quick"), Out: c.String("out"), JSON: c.String("json"), Work: c.String("work"),
		Only: c.StringSlice("only"), Reps: c.Int("reps"), Device: c.String("device"), Threads: c.Int("threads"), Workers: c.Int("workers"),
		Precision:  c.String("precision"),
		SharedData: shared, FashionDir: c.String("fashion-dir"),
		FashionModel: c.String("fashion-model"), CIFARModel: c.String("cifar-model"),
		FashionNorm: c.String("fashion-norm"), CIFARNorm: c.String("cifar-norm"), Python: c.String("python"),
		Command: "hdgebench " + strings.Join(os.Args[1:], " "), Log: os.Stderr,
	})
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Print(bench.Markdown(res))
	return nil
}

// repoRoot is the nearest folder at or above the working directory that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory; give --shared-data")
		}
		dir = parent
	}
}
