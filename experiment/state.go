package experiment

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
	"github.com/hdge-torch/hdge-torch/torch"
)

// StateFile, in each run directory, records what the runner did there: every training segment
// (a sitting, ended by completion, Ctrl-C or a failure) with its wall time and machine, and the
// evaluation with the settings it used. Wall times add up across sittings from it.
const StateFile = "experiment.json"

// Files the trainer and the eval suite write, which the runner reads.
const (
	summaryFile = "summary.json"
	configFile  = "config.json"
	evalDir     = "eval"
)

// Hardware is the machine a segment ran on.
type Hardware struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	Threads  int    `json:"threads"` // libtorch intra-op threads
	Libtorch string `json:"libtorch"`
	Device   string `json:"device"`
	OS       string `json:"os"`
}

func (h Hardware) String() string {
	return fmt.Sprintf("%s, %d cores, libtorch %s with %d intra-op threads, device %s, %s", h.CPU, h.Cores, h.Libtorch, h.Threads, h.Device, h.OS)
}

func hardware(device string) Hardware {
	return Hardware{CPU: cpuModel(), Cores: runtime.NumCPU(), Threads: torch.NumThreads(), Libtorch: torch.Version(),
		Device: device, OS: runtime.GOOS + "/" + runtime.GOARCH}
}

// cpuModel reads the processor's name where the OS tells it (Linux), else names the architecture.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown " + runtime.GOARCH + " CPU"
}

// Segment is one sitting of training.
type Segment struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	FromStep int       `json:"from_step"`
	ToStep   int       `json:"to_step"`
	Images   int       `json:"images"`
	Outcome  string    `json:"outcome"` // complete, interrupted, failed, diverged (ended by divergence after validating: evaluated at its best checkpoint)
	Error    string    `json:"error,omitempty"`
	Hardware Hardware  `json:"hardware"`
}

// EvalRecord is the evaluation of a run directory.
type EvalRecord struct {
	Started    time.Time `json:"started"`
	Seconds    float64   `json:"seconds"`
	Settings   string    `json:"settings"`    // the spec's "eval" object, as canonical JSON
	TrainSteps int       `json:"train_steps"` // steps the run had when it was evaluated
	Hardware   Hardware  `json:"hardware"`
}

// State is the content of StateFile.
type State struct {
	Run      string      `json:"run"`
	Seed     uint64      `json:"seed"`
	Segments []Segment   `json:"train_segments"`
	Eval     *EvalRecord `json:"eval,omitempty"`
	// Failed holds the last failure (training or evaluation); it is cleared when the run is
	// evaluated.
	Failed string `json:"failed,omitempty"`
}

// TrainSeconds adds up the sittings.
func (s *State) TrainSeconds() float64 {
	var t float64
	for _, g := range s.Segments {
		t += g.Seconds
	}
	return t
}

// TrainImages adds up the images trained on over the sittings.
func (s *State) TrainImages() int {
	var n int
	for _, g := range s.Segments {
		n += g.Images
	}
	return n
}

func readState(dir string) (*State, error) {
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

func writeState(dir string, s *State) error {
	return writeJSONFile(filepath.Join(dir, StateFile), s)
}

// writeJSONFile writes atomically, so an interrupted write never leaves half a file that a later
// sitting would trust.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, b []byte) error { return atomicfile.WriteFile(path, b) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
