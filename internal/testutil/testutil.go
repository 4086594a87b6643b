// Package testutil holds what several packages' tests need: the repository root, the shared
// dataset folder, and small real datasets cut from Debian's Fashion-MNIST.
package testutil

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// FashionDir is where Debian's dataset-fashion-mnist puts the four IDX files.
const FashionDir = "/usr/share/datasets/fashion-mnist"

// RepoRoot is the repository root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// SharedData is the folder of MNIST and CIFAR copies: $HDGE_SHARED_DATA, else ../shared/data
// beside the repository, as an absolute path; "" when absent.
func SharedData() string {
	dir := os.Getenv("HDGE_SHARED_DATA")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "..", "shared", "data")
	}
	if _, err := os.Stat(filepath.Join(dir, "mnist")); err != nil {
		return ""
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	return abs
}

// SmallFashion writes the first nTrain training and nTest test images of Debian's Fashion-MNIST
// as IDX files in dir and returns the idx:DIR dataset spec. The test is skipped when the package
// is not installed.
func SmallFashion(t testing.TB, dir string, nTrain, nTest int) string {
	t.Helper()
	if _, err := os.Stat(FashionDir); err != nil {
		t.Skip("Debian's dataset-fashion-mnist is not installed; `make deps` installs it")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		split string
		n     int
	}{{"train", nTrain}, {"t10k", nTest}} {
		copyIDX(t, filepath.Join(FashionDir, s.split+"-images-idx3-ubyte.gz"), filepath.Join(dir, s.split+"-images-idx3-ubyte"), s.n, 28*28)
		copyIDX(t, filepath.Join(FashionDir, s.split+"-labels-idx1-ubyte.gz"), filepath.Join(dir, s.split+"-labels-idx1-ubyte"), s.n, 1)
	}
	return "idx:" + dir
}

// copyIDX writes the header and first n records (of recSize bytes) of a gzipped IDX file.
func copyIDX(t testing.TB, from, to string, n, recSize int) {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(zr)
	var magic uint32
	if err := binary.Read(r, binary.BigEndian, &magic); err != nil {
		t.Fatal(err)
	}
	shape := make([]uint32, magic&0xff)
	if err := binary.Read(r, binary.BigEndian, shape); err != nil {
		t.Fatal(err)
	}
	shape[0] = uint32(n)
	var out bytes.Buffer
	_ = binary.Write(&out, binary.BigEndian, magic)
	_ = binary.Write(&out, binary.BigEndian, shape)
	if _, err := io.CopyN(&out, r, int64(n*recSize)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
