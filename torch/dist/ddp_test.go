package dist_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/dist"
)

// The DDP recipe at the level of this package, as the training loop will use it: rank 0's
// initial weights broadcast, each rank's slice of a global batch, gradients averaged with one
// bucketed all-reduce, identical Adam steps, the logits all-gathered in rank order into a queue.
// Two ranks with half batches must end where one process with the whole batch ends.
const (
	ddpSteps  = 8
	ddpGlobal = 8
)

// ddpTrain runs the recipe as rank `rank` of `world` (g nil: one process) and returns the final
// parameters followed by the queue, flattened.
func ddpTrain(g *dist.Group, rank, world int) ([]float32, error) {
	torch.SetNumThreads(1)
	store := torch.NewScope()
	defer store.Close()
	// Every rank starts from its own weights: the broadcast must make them rank 0's.
	gen, err := torch.NewGenerator(uint64(100+rank), torch.CPU)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	m, err := nn.NewWideResNet(nn.Init{Store: store, Gen: gen, Dev: torch.CPU},
		nn.WRNConfig{Depth: 10, Width: 1, Classes: 10, InChannels: 1, Norm: "none"})
	if err != nil {
		return nil, err
	}
	params := m.Parameters()
	if g != nil {
		if err := g.Broadcast(params, 0); err != nil {
			return nil, err
		}
	}
	opt := torch.NewAdam(params, torch.DefaultAdamConfig(1e-3))
	defer opt.Close()
	var queue []*torch.Tensor
	per := int64(ddpGlobal / world)
	for step := 0; step < ddpSteps; step++ {
		s := torch.NewScope()
		bg, err := torch.NewGenerator(uint64(1000+step), torch.CPU)
		if err != nil {
			return nil, err
		}
		x := s.Randn(bg, []int64{ddpGlobal, 1, 8, 8}, torch.Float32, torch.CPU)
		y := s.RandInt(bg, 0, 10, []int64{ddpGlobal}, torch.CPU)
		bg.Close()
		x = s.Narrow(x, 0, int64(rank)*per, per)
		y = s.Narrow(y, 0, int64(rank)*per, per)
		logits := m.Forward(s, x, true)
		loss := s.CrossEntropy(logits, y, 0, torch.Mean)
		torch.ZeroGrad(params)
		s.Backward(loss)
		grads := make([]*torch.Tensor, len(params))
		for i, p := range params {
			grads[i] = s.Grad(p)
		}
		if err := s.Err(); err != nil {
			return nil, err
		}
		all := s.Detach(logits)
		if g != nil {
			if err := g.AllReduce(grads, dist.Mean); err != nil {
				return nil, err
			}
			if all, err = g.AllGather(s, logits); err != nil {
				return nil, err
			}
		}
		queue = append(queue, store.Adopt(all))
		if err := opt.Step(); err != nil {
			return nil, err
		}
		s.Close()
	}
	var out []float32
	for _, t := range append(params, queue...) {
		v, err := t.Float32s()
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
	}
	return out, nil
}

func ddpWorker(g *dist.Group) error {
	v, err := ddpTrain(g, g.Rank(), g.WorldSize())
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(os.Getenv("DDP_OUT"), "rank-"+strconv.Itoa(g.Rank())+".bin"))
	if err != nil {
		return err
	}
	if err := binary.Write(f, binary.LittleEndian, v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestTwoRanksMatchOneProcess(t *testing.T) {
	dir := t.TempDir()
	ws := startWorkers(t, "ddp", 2, "DDP_OUT="+dir)
	for _, w := range ws {
		w.cmd.Stdout = &w.out
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	want, err := ddpTrain(nil, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	for r, w := range ws {
		if err := w.cmd.Wait(); err != nil {
			t.Fatalf("rank %d: %v\n%s", r, err, w.err.String())
		}
	}
	var ranks [2][]float32
	for r := range ranks {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("rank-%d.bin", r)))
		if err != nil {
			t.Fatal(err)
		}
		ranks[r] = make([]float32, len(b)/4)
		for i := range ranks[r] {
			ranks[r][i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	}
	if len(ranks[0]) != len(want) || len(ranks[1]) != len(want) {
		t.Fatalf("sizes %d, %d, want %d", len(ranks[0]), len(ranks[1]), len(want))
	}
	// The ranks take identical steps on identical averaged gradients: bit-equal weights and queues.
	for i := range want {
		if math.Float32bits(ranks[0][i]) != math.Float32bits(ranks[1][i]) {
			t.Fatalf("ranks differ at %d: %v vs %v", i, ranks[0][i], ranks[1][i])
		}
	}
	// Against one process: the mean of two half-batch means is the full-batch mean up to rounding.
	// Adam divides by the gradient's running RMS, so where a gradient is near zero a rounding-level
	// difference can move a weight by a fraction of lr: the tolerance is absolute, in units of lr.
	var worst float64
	at := 0
	for i, w := range want {
		if d := math.Abs(float64(ranks[0][i] - w)); d > worst {
			worst, at = d, i
		}
	}
	if worst > 2e-5 {
		t.Errorf("2 ranks x %d vs 1 x %d: worst difference %.2e at %d (%v vs %v) > 0.02 lr", ddpGlobal/2, ddpGlobal, worst, at, ranks[0][at], want[at])
	}
	t.Logf("%d values (weights and queue), worst absolute difference %.2e at %d", len(want), worst, at)
}
