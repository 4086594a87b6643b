package data

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// fileServer serves files by base name and counts requests; corrupt flips a byte of each body.
func fileServer(t *testing.T, files map[string][]byte, corrupt bool) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := files[filepath.Base(r.URL.Path)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if corrupt {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 0xff
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func noPartFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(filepath.Base(p), ".part-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

// TestFetchMNIST downloads the real MNIST files from a local server, so the registered checksums
// are checked against the real bytes.
func TestFetchMNIST(t *testing.T) {
	shared := sharedData(t)
	files := map[string][]byte{}
	for _, f := range []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		files[f] = mustRead(t, filepath.Join(shared, "mnist", f))
	}
	srv, hits := fileServer(t, files, false)
	dir := t.TempDir()
	var progress bytes.Buffer
	if err := Fetch(context.Background(), "mnist", dir, srv.URL, &progress); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "t10k-labels-idx1-ubyte.gz") {
		t.Errorf("no progress bar in %q", progress.String())
	}
	d, err := Source{Dirs: []string{dir}}.Load("mnist", Test)
	if err != nil || d.N != 10000 {
		t.Fatalf("load after fetch: %v", err)
	}
	noPartFiles(t, dir)
	before := hits.Load()
	if err := Fetch(context.Background(), "mnist", dir, srv.URL, nil); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != before {
		t.Error("files with the right checksum were downloaded again")
	}
}

func TestFetchBadChecksum(t *testing.T) {
	files := map[string][]byte{}
	for _, f := range knownDatasets[0].Files {
		files[f.Name] = bytes.Repeat([]byte{1}, 1000)
	}
	srv, _ := fileServer(t, files, true)
	dir := t.TempDir()
	err := Fetch(context.Background(), "fashion-mnist", dir, srv.URL, nil)
	if err == nil || !strings.Contains(err.Error(), "MD5") || !strings.Contains(err.Error(), "train-images-idx3-ubyte.gz") {
		t.Fatalf("want a checksum error naming the file, got %v", err)
	}
	if fileExists(filepath.Join(dir, "fashion-mnist", "train-images-idx3-ubyte.gz")) {
		t.Error("a corrupt file was moved into place")
	}
	noPartFiles(t, dir)
}

func TestFetchErrors(t *testing.T) {
	srv, _ := fileServer(t, map[string][]byte{}, false)
	err := Fetch(context.Background(), "svhn", t.TempDir(), srv.URL, nil)
	if err == nil || !strings.Contains(err.Error(), "train_32x32.mat") || !strings.Contains(err.Error(), "404") {
		t.Errorf("want a 404 naming the URL, got %v", err)
	}
	if err := Fetch(context.Background(), "imagenet", t.TempDir(), srv.URL, nil); err == nil || !strings.Contains(err.Error(), "imagenet") {
		t.Errorf("unknown name: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Fetch(ctx, "svhn", t.TempDir(), srv.URL, nil); err == nil {
		t.Error("cancelled fetch succeeded")
	}
}

func tarGz(t *testing.T, members map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, b := range members {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// TestFetchArchive unpacks a CIFAR-style .tar.gz; members outside the dataset folder are ignored.
func TestFetchArchive(t *testing.T) {
	rec := func(y byte) []byte { return append([]byte{y}, bytes.Repeat([]byte{y * 20}, 3072)...) }
	members := map[string][]byte{
		"cifar-10-batches-bin/batches.meta.txt": []byte(strings.Join(cifar10Classes, "\n") + "\n"),
		"cifar-10-batches-bin/test_batch.bin":   append(rec(3), rec(9)...),
		"cifar-10-batches-bin/../evil.bin":      []byte("x"),
		"/etc/evil":                             []byte("x"),
	}
	for i := 1; i <= 5; i++ {
		members["cifar-10-batches-bin/data_batch_"+string(rune('0'+i))+".bin"] = rec(byte(i))
	}
	archive := tarGz(t, members)
	sum := md5.Sum(archive)
	k := knownDatasets[2]
	k.Archive = &remoteFile{k.Archive.Name, hex.EncodeToString(sum[:])}
	srv, _ := fileServer(t, map[string][]byte{k.Archive.Name: archive}, false)
	dir := t.TempDir()
	if err := fetchKnown(context.Background(), &k, dir, srv.URL, nil); err != nil {
		t.Fatal(err)
	}
	d, err := Source{Dirs: []string{dir}}.Load("cifar10", Train)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 5 || d.Labels[4] != 5 || d.Image(4)[0] != 100 {
		t.Errorf("N=%d labels %v", d.N, d.Labels)
	}
	if fileExists(filepath.Join(dir, "evil.bin")) {
		t.Error("archive wrote outside the dataset folder")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only the dataset folder", len(entries))
	}
	noPartFiles(t, dir)
}
