package eval

import (
	"strings"
	"testing"
)

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   string
	}{
		{0, 300, "0 100 200 300"},
		{40, 300, "100 200 300"},
		{0, 1e-4, "0 2e-05 4e-05 6e-05 8e-05 0.0001"},
		{0, 100, "0 20 40 60 80 100"},
		{0, 0.125, "0 0.025 0.050 0.075 0.100 0.125"},
		{1.7, 8.1, "2 4 6 8"},
	} {
		var labels []string
		for _, tk := range (niceTicks{}).Ticks(c.lo, c.hi) {
			if tk.Label != "" {
				labels = append(labels, tk.Label)
			}
		}
		if got := strings.Join(labels, " "); got != c.want {
			t.Errorf("[%v, %v]: ticks %q, want %q", c.lo, c.hi, got, c.want)
		}
	}
}
