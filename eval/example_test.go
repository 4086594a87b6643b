package eval_test

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/eval"
)

// An OOD detector scores in-distribution images (positives) above OOD ones; AUROC is the chance
// that a random positive outscores a random negative, ties counting one half.
func ExampleROCAUC() {
	scores := []float64{0.9, 0.8, 0.35, 0.7, 0.2, 0.35}
	inDist := []bool{true, true, true, false, false, false}
	auc, err := eval.ROCAUC(scores, inDist)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("AUROC %.4f\n", auc)
	// Output: AUROC 0.8333
}
