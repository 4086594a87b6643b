package eval

import (
	"bytes"
	"fmt"
	"image/png"
)

// Samples are the pictures of one folder written by `hdge-torch sample`, embedded in the report
// as its plots are so that report.html stays one file.
type Samples struct {
	// Dir is the samples folder as metrics.json names it: relative to the report's folder where
	// it lies below or beside it.
	Dir     string
	Caption string // how the samples were drawn
	Images  []SampleImage
}

// SampleImage is one PNG of a samples folder (the grid, the top-confidence selection).
type SampleImage struct {
	File  string // file name in Samples.Dir
	Title string
	PNG   []byte
}

// Check refuses a folder without images or with an image that does not decode as a PNG,
// naming it.
func (s Samples) Check() error {
	if len(s.Images) == 0 {
		return fmt.Errorf("samples %s: no images", s.Dir)
	}
	for _, im := range s.Images {
		if _, err := png.DecodeConfig(bytes.NewReader(im.PNG)); err != nil {
			return fmt.Errorf("samples %s: %s is not a PNG: %w", s.Dir, im.File, err)
		}
	}
	return nil
}

// AddSamples puts a samples folder's images, and its generation metrics when it has them, in
// the report.
func (r *Report) AddSamples(s Samples, g *Generation) error {
	if err := s.Check(); err != nil {
		return err
	}
	r.Samples, r.Generation = &s, g
	return nil
}

type samplesJSON struct {
	Dir     string   `json:"dir"`
	Caption string   `json:"caption,omitempty"`
	Files   []string `json:"files"`
}

func (s *Samples) json() *samplesJSON {
	if s == nil {
		return nil
	}
	j := &samplesJSON{Dir: s.Dir, Caption: s.Caption, Files: []string{}}
	for _, im := range s.Images {
		j.Files = append(j.Files, im.File)
	}
	return j
}
