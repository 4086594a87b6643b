package data

// The networks' input space: a pixel p ∈ [0, 1] (a byte v as v/255) is seen as
// x = (p − PixelMean)/PixelStd ∈ [−1, 1], JEM's normalisation. Everything that maps between
// pixels and model inputs (the loader, attacks, sampling, image export) uses these.
const (
	PixelMean = 0.5
	PixelStd  = 0.5
)

// ToModel maps a pixel value in [0, 1] to the model's input space.
func ToModel(p float64) float64 { return (p - PixelMean) / PixelStd }

// ToPixel maps a model input back to a pixel value (unclipped).
func ToPixel(x float64) float64 { return x*PixelStd + PixelMean }
