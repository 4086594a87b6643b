package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// TrainingLog holds the numeric fields of a metrics JSON-lines file, one record per line, e.g.
// {"step":100,"epoch":0,"loss":2.1,"loss_ce":1.9,"loss_gen":0.2,"lr":1e-4,"img_per_s":812}.
// Any field may be missing from any line; non-numeric fields are ignored.
type TrainingLog struct {
	Source   string
	Records  []map[string]float64
	Keys     []string // numeric keys in order of first appearance
	Warnings []string
}

// ReadTrainingLog reads a metrics.jsonl file.
func ReadTrainingLog(path string) (*TrainingLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("training log: %w", err)
	}
	defer f.Close()
	return ParseTrainingLog(f, path)
}

// ParseTrainingLog parses JSON lines from r; source names r in errors. A malformed final line is
// skipped with a warning, because a run killed mid-write leaves one; a malformed line elsewhere is
// an error.
func ParseTrainingLog(r io.Reader, source string) (*TrainingLog, error) {
	t := &TrainingLog{Source: source}
	seen := map[string]bool{}
	br := bufio.NewReader(r)
	var pendingErr error
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:%d: %w", source, lineNo, err)
		}
		eof := err != nil
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			if pendingErr != nil {
				return nil, pendingErr
			}
			rec, perr := parseRecord(line)
			if perr != nil {
				pendingErr = fmt.Errorf("%s:%d: %w", source, lineNo, perr)
			} else {
				for k := range rec {
					if !seen[k] {
						seen[k] = true
						t.Keys = append(t.Keys, k)
					}
				}
				t.Records = append(t.Records, rec)
			}
		}
		if eof {
			break
		}
	}
	if pendingErr != nil {
		t.Warnings = append(t.Warnings, "skipped malformed last line: "+pendingErr.Error())
	}
	// Keys of one line come out of a map; order each line's new keys canonically instead.
	t.Keys = orderKeys(t.Keys)
	return t, nil
}

func parseRecord(line []byte) (map[string]float64, error) {
	var raw map[string]any
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if d.More() {
		return nil, fmt.Errorf("more than one JSON value on the line")
	}
	rec := make(map[string]float64, len(raw))
	for k, v := range raw {
		n, ok := v.(json.Number)
		if !ok {
			continue
		}
		f, err := n.Float64()
		if err != nil || math.IsNaN(f) {
			continue
		}
		rec[k] = f
	}
	return rec, nil
}

// orderKeys puts the x-axis fields first, then losses, accuracies and the rest, each alphabetically.
func orderKeys(keys []string) []string {
	rank := func(k string) int {
		switch {
		case k == "step":
			return 0
		case k == "epoch":
			return 1
		case k == "loss":
			return 2
		case strings.HasPrefix(k, "loss"):
			return 3
		case strings.Contains(k, "acc"):
			return 4
		}
		return 5
	}
	sort.SliceStable(keys, func(i, j int) bool {
		ri, rj := rank(keys[i]), rank(keys[j])
		if ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	return keys
}

// Has reports whether any record carries key.
func (t *TrainingLog) Has(key string) bool {
	for _, k := range t.Keys {
		if k == key {
			return true
		}
	}
	return false
}

// XKey is the field curves are drawn against: "step" when logged, else "epoch", else "" (the line
// index).
func (t *TrainingLog) XKey() string {
	for _, k := range []string{"step", "epoch"} {
		if t.Has(k) {
			return k
		}
	}
	return ""
}

// Series returns the (x, y) points of key against XKey. A record lacking the x field (say a
// validation line without a step) takes the last x seen before it.
func (t *TrainingLog) Series(key string) (x, y []float64) {
	xKey := t.XKey()
	lastX := 0.0
	for i, r := range t.Records {
		xv := float64(i)
		if xKey != "" {
			if v, ok := r[xKey]; ok {
				lastX = v
			}
			xv = lastX
		}
		if v, ok := r[key]; ok {
			x = append(x, xv)
			y = append(y, v)
		}
	}
	return x, y
}

// Final maps each key to its last logged value.
func (t *TrainingLog) Final() map[string]float64 {
	out := map[string]float64{}
	for _, r := range t.Records {
		for k, v := range r {
			out[k] = v
		}
	}
	return out
}

// LossKeys are the fields named loss or loss_*.
func (t *TrainingLog) LossKeys() []string {
	var ks []string
	for _, k := range t.Keys {
		if k == "loss" || strings.HasPrefix(k, "loss_") {
			ks = append(ks, k)
		}
	}
	return ks
}

// AccuracyKeys are the fields whose name contains "acc" (acc, train_acc, val_acc, ...).
func (t *TrainingLog) AccuracyKeys() []string {
	var ks []string
	for _, k := range t.Keys {
		if strings.Contains(k, "acc") {
			ks = append(ks, k)
		}
	}
	return ks
}
