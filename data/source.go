package data

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNotFound is wrapped by Load's error when a named dataset is in none of the searched places.
var ErrNotFound = errors.New("not found")

// DebianDatasets is where Debian's dataset-* packages install their files.
const DebianDatasets = "/usr/share/datasets"

type remoteFile struct {
	Name string
	MD5  string
}

// knownDataset describes a named dataset: the folder it lives in under a data directory, how to
// read it, and where its official files come from.
type knownDataset struct {
	Name    string
	Subdir  string
	Format  string // idx, cifar10, cifar100, svhn
	Classes []string
	Mirrors []string     // tried in order; each is a URL prefix ending in "/"
	Files   []remoteFile // downloaded as they are
	Archive *remoteFile  // a .tar.gz whose Subdir/ member folder is unpacked
	Members []string     // the archive members that must end up in Subdir/
}

var fashionClasses = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// MD5s are the publishers' (Fashion-MNIST's README, the CIFAR page, torchvision's SVHN and MNIST
// lists); MNIST's also match the byte-identical copies used in the tests.
var knownDatasets = []knownDataset{
	{Name: "fashion-mnist", Subdir: "fashion-mnist", Format: "idx", Classes: fashionClasses,
		Mirrors: []string{"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
			"https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"},
		Files: []remoteFile{
			{"train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"},
			{"train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"},
			{"t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"},
			{"t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"},
		}},
	{Name: "mnist", Subdir: "mnist", Format: "idx", Classes: numberedClasses(10),
		Mirrors: []string{"https://ossci-datasets.s3.amazonaws.com/mnist/",
			"https://storage.googleapis.com/cvdf-datasets/mnist/"},
		Files: []remoteFile{
			{"train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"},
			{"train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"},
			{"t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"},
			{"t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"},
		}},
	{Name: "cifar10", Subdir: "cifar-10-batches-bin", Format: "cifar10", Classes: cifar10Classes,
		Mirrors: []string{"https://www.cs.toronto.edu/~kriz/"},
		Archive: &remoteFile{"cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"},
		Members: []string{"batches.meta.txt", "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
			"data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"}},
	{Name: "cifar100", Subdir: "cifar-100-binary", Format: "cifar100", Classes: cifar100Classes,
		Mirrors: []string{"https://www.cs.toronto.edu/~kriz/"},
		Archive: &remoteFile{"cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"},
		Members: []string{"coarse_label_names.txt", "fine_label_names.txt", "train.bin", "test.bin"}},
	{Name: "svhn", Subdir: "svhn", Format: "svhn", Classes: numberedClasses(10),
		Mirrors: []string{"http://ufldl.stanford.edu/housenumbers/"},
		Files: []remoteFile{
			{"train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"},
			{"test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"},
		}},
}

var formats = []string{"idx", "cifar10", "cifar100", "svhn", "folder"}

// KnownDatasets lists the names Load and Fetch accept, for help texts.
func KnownDatasets() []string {
	names := make([]string, len(knownDatasets))
	for i, k := range knownDatasets {
		names[i] = k.Name
	}
	return names
}

// KnownFormats lists the prefixes of "FORMAT:PATH" dataset specs.
func KnownFormats() []string { return slices.Clone(formats) }

func lookupKnown(name string) (*knownDataset, bool) {
	for i := range knownDatasets {
		if knownDatasets[i].Name == name {
			return &knownDatasets[i], true
		}
	}
	return nil, false
}

// Source is the ordered list of data directories searched for named datasets; each named dataset
// lives in its own subfolder (mnist/, fashion-mnist/, cifar-10-batches-bin/, cifar-100-binary/, svhn/).
type Source struct{ Dirs []string }

// DefaultDataDir is where `data fetch` writes: the flag if given, else the first entry of
// $HDGE_DATA, else the per-user cache folder.
func DefaultDataDir(flagDir string) string {
	if flagDir != "" {
		return flagDir
	}
	if env := filepath.SplitList(os.Getenv("HDGE_DATA")); len(env) > 0 && env[0] != "" {
		return env[0]
	}
	if c, err := os.UserCacheDir(); err == nil {
		return filepath.Join(c, "hdge-torch")
	}
	return "hdge-data"
}

// DefaultSource searches the flag directory, then $HDGE_DATA (a path list), then the per-user
// cache folder, then Debian's dataset folder.
func DefaultSource(flagDir string) Source {
	var dirs []string
	add := func(d string) {
		if d != "" && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	add(flagDir)
	for _, d := range filepath.SplitList(os.Getenv("HDGE_DATA")) {
		add(d)
	}
	if c, err := os.UserCacheDir(); err == nil {
		add(filepath.Join(c, "hdge-torch"))
	}
	add(DebianDatasets)
	return Source{Dirs: dirs}
}

// Load reads one split of a dataset given by name ("cifar10") or as FORMAT:PATH ("idx:DIR",
// "cifar10:DIR", "cifar100:DIR", "svhn:FILE", "folder:DIR"). For svhn:FILE the file is the
// split; folder:DIR uses DIR/train or DIR/test when present, else DIR for both splits.
func (s Source) Load(spec string, split Split) (*Dataset, error) {
	if split != Train && split != Test {
		return nil, fmt.Errorf("dataset %q: unknown split %q (want train or test)", spec, split)
	}
	if k, ok := lookupKnown(spec); ok {
		return s.loadKnown(k, split)
	}
	format, path, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("unknown dataset %q: want one of %s, or FORMAT:PATH with FORMAT one of %s",
			spec, strings.Join(KnownDatasets(), ", "), strings.Join(formats, ", "))
	}
	if !slices.Contains(formats, format) {
		return nil, fmt.Errorf("dataset %q: unknown format prefix %q (want one of %s)", spec, format, strings.Join(formats, ", "))
	}
	if path == "" {
		return nil, fmt.Errorf("dataset %q: empty path after %q", spec, format+":")
	}
	d, err := loadFormat(format, path, split, nil)
	if err != nil {
		return nil, err
	}
	d.Name = spec
	return d, nil
}

func loadFormat(format, path string, split Split, classes []string) (*Dataset, error) {
	switch format {
	case "idx":
		img, lab, err := idxFiles(path, split)
		if err != nil {
			return nil, err
		}
		return ReadIDX(img, lab, classes)
	case "cifar10":
		return loadCIFARDir(path, 10, split)
	case "cifar100":
		return loadCIFARDir(path, 100, split)
	case "svhn":
		return ReadSVHN(path)
	case "folder":
		if !dirExists(path) {
			return nil, fmt.Errorf("image folder %s does not exist", path)
		}
		if sub := filepath.Join(path, string(split)); dirExists(sub) {
			return ReadFolder(sub)
		}
		return ReadFolder(path)
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

func (s Source) loadKnown(k *knownDataset, split Split) (*Dataset, error) {
	var firstMissing error
	var searched []string
	for _, root := range s.Dirs {
		dir := filepath.Join(root, k.Subdir)
		searched = append(searched, dir)
		if !dirExists(dir) {
			continue
		}
		path := dir
		if k.Format == "svhn" {
			path = filepath.Join(dir, string(split)+"_32x32.mat")
		}
		d, err := loadFormat(k.Format, path, split, k.Classes)
		if err == nil {
			d.Name = k.Name
			return d, nil
		}
		// A folder that lacks this split's files does not hide a complete copy further down the
		// search path; anything else (a corrupt file) is reported at once.
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s %s: %w", k.Name, split, err)
		}
		if firstMissing == nil {
			firstMissing = err
		}
	}
	if firstMissing != nil {
		return nil, fmt.Errorf("%s %s: %w", k.Name, split, firstMissing)
	}
	return nil, fmt.Errorf("%s: %w in %s; run `hdge-torch data fetch %s`", k.Name, ErrNotFound, strings.Join(searched, ", "), k.Name)
}
