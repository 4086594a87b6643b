package trainer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// MetricsFile is the run folder's record of training, one JSON object a line: the logged steps,
// validations, and events such as {"event": "restart", ...} for each divergence rolled back.
const MetricsFile = "metrics.jsonl"

// TrainingLog is what a run's metrics.jsonl, which every sitting appends to, says about its
// course beyond the per-step numbers: the divergences it rolled back from, and the mean logit
// norm of its last logged step (nil if it logs none), which shows HDGE's collapse.
type TrainingLog struct {
	Restarts      []Restart
	LastLogitNorm *float64
}

// Restart is one {"event": "restart"} record: the run rolled back to Step, its Restart-th restart,
// and went on with the lr scaled by LRScale.
type Restart struct {
	Step    int     `json:"step"`
	Restart int     `json:"restart"`
	LRScale float64 `json:"lr_scale"`
}

// ReadTrainingLog reads a run folder's metrics.jsonl; a run that has not started has an empty log.
// A line cut short by a crash is skipped: the rest of the file still counts.
func ReadTrainingLog(dir string) (TrainingLog, error) {
	var log TrainingLog
	path := filepath.Join(dir, MetricsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return log, nil
	}
	if err != nil {
		return log, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"restart"`)) && !bytes.Contains(line, []byte(`"logit_norm"`)) {
			continue
		}
		var ev struct {
			Restart
			Event     string   `json:"event"`
			LogitNorm *float64 `json:"logit_norm"`
		}
		if json.Unmarshal(line, &ev) != nil {
			continue
		}
		switch {
		case ev.Event == "restart":
			log.Restarts = append(log.Restarts, ev.Restart)
		case ev.Event == "" && ev.LogitNorm != nil:
			log.LastLogitNorm = ev.LogitNorm
		}
	}
	if err := sc.Err(); err != nil {
		return log, fmt.Errorf("%s: %w", path, err)
	}
	return log, nil
}
