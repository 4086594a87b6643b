// Package nn holds the layers and models hdge-torch trains, as plain structs over torch tensors.
// Parameters and buffers carry PyTorch's state_dict names and default initialisation, so a
// checkpoint written here loads into the equivalent PyTorch module and gives the same logits.
package nn
