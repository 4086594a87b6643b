// Package released maps checkpoints between this project's layout and the one the JEM and HDGE
// authors' released PyTorch code saves and loads (a trunk f.*, a head class_output.*, an unused
// energy_output.*, the queue buffers, and {"model_state_dict", "replay_buffer"}). It only renames
// and reshapes the dict; it holds no model and needs no libtorch.
package released
