package eval

import (
	"bytes"
	"image"
	"image/png"
	"strings"
	"testing"
)

// TestSamplesLabels: the report calls the numbers IS and FID only for pytorch-fid's Inception-v3,
// and refuses images that are not PNGs.
func TestSamplesLabels(t *testing.T) {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 3, 2))); err != nil {
		t.Fatal(err)
	}
	s := Samples{Dir: "../samples", Images: []SampleImage{{File: "samples.png", Title: "Samples", PNG: b.Bytes()}}}
	for _, tc := range []struct {
		net        string
		want, lack []string
	}{
		{FeatureNetInception, []string{">IS<", ">FID<"}, []string{"IS (classifier)", "Scored in the features"}},
		{ClassifierFeatureNet("runs/ce"), []string{"IS (classifier)", "FD (classifier features)", "classifier:runs/ce", "Scored in the features"}, []string{"FID"}},
	} {
		r := NewReport("t", "m", nil)
		if err := r.AddSamples(s, &Generation{FeatureNet: tc.net, ISMean: 2.5, ISStd: 0.1, FD: 12.25, N: 100}); err != nil {
			t.Fatal(err)
		}
		page, err := r.HTML()
		if err != nil {
			t.Fatal(err)
		}
		text := string(page)
		for _, w := range append(tc.want, "12.250", "2.500 ± 0.100", `id="samples-samples_png"`) {
			if !strings.Contains(text, w) {
				t.Errorf("%s: the report lacks %q", tc.net, w)
			}
		}
		for _, w := range tc.lack {
			if strings.Contains(text, w) {
				t.Errorf("%s: the report has %q", tc.net, w)
			}
		}
	}
	s.Images = append(s.Images, SampleImage{File: "top.png", PNG: []byte("GIF89a")})
	if err := NewReport("t", "m", nil).AddSamples(s, nil); err == nil || !strings.Contains(err.Error(), "top.png") {
		t.Errorf("a broken top.png: err = %v", err)
	}
}
