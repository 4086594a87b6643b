// Package data reads the image datasets HDGE trains and evaluates on (IDX, CIFAR binary, SVHN
// .mat, image folders), derives OOD sets from them, and feeds augmented float32 batches through a
// deterministic parallel pipeline. It is pure Go so it tests fast and never touches libtorch's
// threads.
package data
