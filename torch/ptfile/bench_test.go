package ptfile

import (
	"path/filepath"
	"testing"
)

// BenchmarkWriteRead saves and loads a 64 MiB float32 checkpoint (one big tensor plus 200
// small ones, like a WideResNet state dict) through the file system.
func BenchmarkWriteRead(b *testing.B) {
	sd := NewOrderedDict()
	sd.Set("big", &Tensor{DType: "float32", Shape: []int64{4096, 4096}, Data: make([]byte, 4096*4096*4)})
	for i := range 200 {
		sd.Set("small"+string(rune('a'+i%26))+string(rune('0'+i/26)), f32Tensor([]int64{4}, 1, 2, 3, 4))
	}
	path := filepath.Join(b.TempDir(), "bench.pt")
	const mib = 64.0
	for b.Loop() {
		if err := Write(path, sd); err != nil {
			b.Fatal(err)
		}
		if _, err := Read(path); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(mib*float64(b.N)/b.Elapsed().Seconds(), "MiB/s")
}
