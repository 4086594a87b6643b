// Package sampler draws images from a model's energy by stochastic gradient Langevin dynamics
// (SGLD), as JEM and HDGE+JEM train and sample: persistent chains kept in a replay buffer, or
// short runs from uniform noise. The caller supplies the energy; every random number comes from a
// generator the caller passes, and the buffer is checkpoint state so a resumed run continues the
// same chains.
package sampler
