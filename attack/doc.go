// Package attack perturbs inputs against a live model: white-box PGD (Madry et al.) under L∞ and
// L2 in [0, 1] pixel space with the model's input scaling (data.ToModel) inside the attacked
// function, and JEM's input-gradient-norm OOD score. Evaluation uses it to measure robustness,
// and training (adversarial training) to make its inputs; it sits beside eval, whose other suites
// work on exported logits and need no libtorch.
package attack
