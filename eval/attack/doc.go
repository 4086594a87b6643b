// Package attack runs the gradient-based parts of an evaluation on a live model: white-box PGD
// (Madry et al.) under L∞ and L2 in [0, 1] pixel space with the model's input scaling inside the
// attacked function, and JEM's input-gradient-norm OOD score. Everything else in eval works on
// exported logits and needs no libtorch.
package attack
