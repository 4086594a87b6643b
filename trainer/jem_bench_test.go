package trainer

import (
	"testing"

	"github.com/hdge-torch/hdge-torch/model"
)

// jemBenchConfig is the CPU default model (wrn-10-2) without batch norm, which jem refuses, at
// batch 64 on 1×28×28, with JEM's sampler: 20 SGLD steps, 10000 chains.
func jemBenchConfig(objective string) Config {
	cfg := Defaults()
	cfg.Objective, cfg.Norm = objective, "none"
	return cfg
}

// BenchmarkJEMStep alternates a CE, an HDGE, a JEM and an HDGE+JEM training step of the same
// model and batch (the order rotated every round, so machine load hits all alike) and reports
// the median step times and the medians over rounds of the ratios to CE and HDGE: the paper's
// practical claim is that HDGE avoids the cost of SGLD, about Steps+1 forward-backward passes.
// It also reports the replay buffer's memory.
func BenchmarkJEMStep(b *testing.B) {
	benchThreads(b)
	names := []string{"ce", "hdge", "jem", "hdge-jem"}
	sbs := make([]*stepBench, len(names))
	for i, n := range names {
		sbs[i] = newStepBenchFor(b, jemBenchConfig(n), 10, 1, 28)
	}
	ts := alternate(b, sbs...)
	for i, n := range names {
		b.ReportMetric(medianOf(ts[i])*1e3, n+"-ms/step")
	}
	ratio := func(a, z int) float64 { return medianRatio(ts[a], ts[z]) }
	b.ReportMetric(ratio(2, 0), "jem/ce")
	b.ReportMetric(ratio(3, 0), "hdge-jem/ce")
	b.ReportMetric(ratio(2, 1), "jem/hdge")
	b.ReportMetric(ratio(3, 1), "hdge-jem/hdge")
	buf := sbs[2].st.obj.(*jemObjective).jem.buf
	b.ReportMetric(float64(buf.Bytes()), "buffer-bytes")
}

// BenchmarkJEMStepAlone is one JEM training step (20 SGLD steps), the number bench/jem_reference.py
// is compared with.
func BenchmarkJEMStepAlone(b *testing.B) {
	benchThreads(b)
	for _, layout := range []model.Layout{model.LayoutChannelsLast, model.LayoutNCHW} {
		b.Run("channels-last="+string(layout), func(b *testing.B) {
			cfg := jemBenchConfig("jem")
			cfg.ChannelsLast = layout
			sb := newStepBenchFor(b, cfg, 10, 1, 28)
			sb.step(b)
			for b.Loop() {
				sb.step(b)
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/step")
			b.ReportMetric(float64(cfg.SGLDSteps), "sgld-steps")
		})
	}
}
