package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synthTrainingLog writes a metrics.jsonl like the trainer's: per-step lines with losses, lr and
// throughput, and per-epoch validation lines that carry no step.
func synthTrainingLog(t *testing.T, steps int) *TrainingLog {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	var b strings.Builder
	for s := 1; s <= steps; s++ {
		ce := 2.3*math.Exp(-float64(s)/120) + 0.15 + 0.08*rng.NormFloat64()
		gen := 1.2*math.Exp(-float64(s)/200) + 0.4 + 0.05*rng.NormFloat64()
		lr := 1e-4 * min(1, float64(s)/50)
		fmt.Fprintf(&b, `{"step":%d,"epoch":%d,"loss":%.5f,"loss_ce":%.5f,"loss_gen":%.5f,"lr":%g,"img_per_s":%.1f,"phase":"train"}`+"\n",
			s, s/40, ce+gen, ce, gen, lr, 800+30*rng.NormFloat64())
		if s%40 == 0 {
			fmt.Fprintf(&b, `{"epoch":%d,"val_acc":%.4f}`+"\n", s/40, 0.95-0.6*math.Exp(-float64(s)/100))
		}
	}
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := ReadTrainingLog(path)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func TestTrainingLog(t *testing.T) {
	log := synthTrainingLog(t, 200)
	if len(log.Records) != 205 {
		t.Errorf("%d records, want 205", len(log.Records))
	}
	want := []string{"step", "epoch", "loss", "loss_ce", "loss_gen", "val_acc", "img_per_s", "lr"}
	if strings.Join(log.Keys, ",") != strings.Join(want, ",") {
		t.Errorf("keys %v, want %v (non-numeric phase dropped, canonical order)", log.Keys, want)
	}
	if log.XKey() != "step" {
		t.Errorf("x key %q", log.XKey())
	}
	x, y := log.Series("val_acc")
	if len(x) != 5 || x[0] != 40 || x[4] != 200 {
		t.Errorf("val_acc at steps %v: validation lines should take the preceding step", x)
	}
	if math.Abs(y[4]-(0.95-0.6*math.Exp(-2))) > 1e-4 {
		t.Errorf("last val_acc %v", y[4])
	}
	if f := log.Final(); f["step"] != 200 || f["epoch"] != 5 {
		t.Errorf("final %v", f)
	}
	if got := strings.Join(log.LossKeys(), ","); got != "loss,loss_ce,loss_gen" {
		t.Errorf("loss keys %s", got)
	}
}

func TestTrainingLogTolerance(t *testing.T) {
	in := "{\"epoch\":1,\"loss\":2}\n\n{\"epoch\":2,\"loss\":1.5,\"note\":null}\n{\"epoch\":3,\"lo"
	log, err := ParseTrainingLog(strings.NewReader(in), "run/metrics.jsonl")
	mustNoErr(t, err)
	if len(log.Records) != 2 || len(log.Warnings) != 1 || !strings.Contains(log.Warnings[0], "run/metrics.jsonl:4") {
		t.Errorf("records %v warnings %v", log.Records, log.Warnings)
	}
	if log.XKey() != "epoch" {
		t.Errorf("x key %q, want epoch", log.XKey())
	}
	_, err = ParseTrainingLog(strings.NewReader("{\"loss\":1}\nnot json\n{\"loss\":2}\n"), "m.jsonl")
	if err == nil || !strings.Contains(err.Error(), "m.jsonl:2") {
		t.Errorf("malformed middle line: %v", err)
	}
	_, err = ReadTrainingLog(filepath.Join(t.TempDir(), "missing.jsonl"))
	if err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Errorf("missing file: %v", err)
	}
	log, err = ParseTrainingLog(strings.NewReader(`{"loss":3}`+"\n"+`{"loss":2}`), "x")
	mustNoErr(t, err)
	if x, _ := log.Series("loss"); len(x) != 2 || x[1] != 1 {
		t.Errorf("without step or epoch the x axis is the line index, got %v", x)
	}
	if _, err := TrainingPlots(&TrainingLog{Source: "x", Records: []map[string]float64{{"foo": 1}}, Keys: []string{"foo"}}); err == nil {
		t.Error("plots from a log without known fields")
	}
}
