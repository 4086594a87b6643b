// Package tbevent writes TensorBoard event files in pure Go, so training curves can be watched
// live in TensorBoard without Python on the training machine. Only what scalars need is encoded:
// the TFRecord framing with masked CRC32C and the few protobuf fields of Event and Summary, by hand.
package tbevent
