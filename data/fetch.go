package data

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Fetch downloads the named dataset into dir/<its folder>: from baseURL when given (a mirror or a
// test server holding the official file names), else from the official addresses. Every file is
// written to a temporary name, checked against the publisher's MD5 and only then renamed into
// place, so an interrupted or corrupt download never looks like data. Files already present with
// the right checksum are kept. progress (nil = silent) receives progress bars.
func Fetch(ctx context.Context, name, dir string, baseURL string, progress io.Writer) error {
	k, ok := lookupKnown(name)
	if !ok {
		return fmt.Errorf("fetch: unknown dataset %q (known: %s)", name, strings.Join(KnownDatasets(), ", "))
	}
	return fetchKnown(ctx, k, dir, baseURL, progress)
}

func fetchKnown(ctx context.Context, k *knownDataset, dir, baseURL string, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	target := filepath.Join(dir, k.Subdir)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("fetch %s: %w", k.Name, err)
	}
	mirrors := k.Mirrors
	if baseURL != "" {
		mirrors = []string{strings.TrimSuffix(baseURL, "/") + "/"}
	}
	for _, f := range k.Files {
		dst := filepath.Join(target, f.Name)
		if sum, err := fileMD5(dst); err == nil && sum == f.MD5 {
			fmt.Fprintf(progress, "%s: present, checksum ok\n", dst)
			continue
		}
		tmp, err := download(ctx, mirrors, f, target, progress)
		if err != nil {
			return fmt.Errorf("fetch %s: %w", k.Name, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("fetch %s: %w", k.Name, err)
		}
	}
	if k.Archive == nil || archiveComplete(target, k.Members) {
		return nil
	}
	tmp, err := download(ctx, mirrors, *k.Archive, dir, progress)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", k.Name, err)
	}
	defer os.Remove(tmp)
	if err := untarMembers(tmp, k.Archive.Name, k.Subdir, target); err != nil {
		return fmt.Errorf("fetch %s: %w", k.Name, err)
	}
	for _, m := range k.Members {
		if !fileExists(filepath.Join(target, m)) {
			return fmt.Errorf("fetch %s: archive %s lacks %s/%s", k.Name, k.Archive.Name, k.Subdir, m)
		}
	}
	return nil
}

func archiveComplete(dir string, members []string) bool {
	for _, m := range members {
		if !fileExists(filepath.Join(dir, m)) {
			return false
		}
	}
	return true
}

func fileMD5(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// download tries each mirror in turn and returns the path of a verified temporary file in dir.
func download(ctx context.Context, mirrors []string, f remoteFile, dir string, progress io.Writer) (string, error) {
	var errs []error
	for _, m := range mirrors {
		tmp, err := downloadOne(ctx, m+f.Name, f, dir, progress)
		if err == nil {
			return tmp, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return "", errors.Join(errs...)
}

func downloadOne(ctx context.Context, url string, f remoteFile, dir string, progress io.Writer) (path string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("%s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP status %s", url, resp.Status)
	}
	out, err := os.CreateTemp(dir, "."+f.Name+".part-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	bar := progressbar.NewOptions64(resp.ContentLength,
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription(f.Name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }),
	)
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(out, h, bar), resp.Body)
	if err != nil {
		return "", fmt.Errorf("%s: download failed after %d bytes: %w", url, n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", fmt.Errorf("%s: got %d of %d bytes", url, n, resp.ContentLength)
	}
	_ = bar.Finish()
	if got := hex.EncodeToString(h.Sum(nil)); got != f.MD5 {
		return "", fmt.Errorf("%s: MD5 %s, want %s (corrupt or wrong file)", url, got, f.MD5)
	}
	if err := out.Sync(); err != nil {
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return out.Name(), nil
}

// untarMembers unpacks the regular files directly under prefix/ in a .tar.gz into target, each
// through a temporary file and a rename. Anything else (links, nested or escaping paths) is
// ignored, so a hostile archive cannot write outside target.
func untarMembers(archive, name, prefix, target string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		clean := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		rel, ok := strings.CutPrefix(clean, prefix+"/")
		if !ok || rel == "" || strings.Contains(rel, "/") || rel == ".." {
			continue
		}
		tmp, err := os.CreateTemp(target, "."+rel+".part-*")
		if err != nil {
			return err
		}
		_, err = io.Copy(tmp, tr)
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), filepath.Join(target, rel))
		}
		if err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("%s: extracting %s: %w", name, hdr.Name, err)
		}
	}
}
