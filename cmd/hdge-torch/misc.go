package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/torch"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the libtorch version, threads and devices",
		Action: func(c *cli.Context) error {
			fmt.Printf("hdge-torch (go %s) on libtorch %s, %d threads, cuda available: %v (%d devices)\n",
				runtime.Version(), torch.Version(), torch.NumThreads(), torch.CUDAAvailable(), torch.CUDADeviceCount())
			return nil
		},
	}
}

func dataCommand() *cli.Command {
	return &cli.Command{
		Name:  "data",
		Usage: "manage datasets",
		Subcommands: []*cli.Command{{
			Name:      "fetch",
			Usage:     "download a dataset from its official address, verify its checksum and move it into place",
			ArgsUsage: "NAME (" + strings.Join(data.KnownDatasets(), ", ") + ")",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data-dir", Usage: "where to put it (default: $HDGE_DATA or the per-user cache)"},
				&cli.StringFlag{Name: "base-url", Usage: "fetch from this mirror instead of the official address"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return cli.Exit("data fetch needs one dataset name: "+strings.Join(data.KnownDatasets(), ", "), 2)
				}
				dir := c.String("data-dir")
				if dir == "" {
					src := data.DefaultSource("")
					if len(src.Dirs) == 0 {
						return cli.Exit("no data directory: give --data-dir", 2)
					}
					dir = src.Dirs[0]
				}
				if err := data.Fetch(c.Context, c.Args().First(), dir, c.String("base-url"), os.Stderr); err != nil {
					return cli.Exit(err.Error(), 1)
				}
				fmt.Printf("%s is in %s\n", c.Args().First(), dir)
				return nil
			},
		}},
	}
}
