package tbevent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// crc32cBitwise is CRC32C from its definition (reflected polynomial 0x82F63B78, init and final
// xor 0xFFFFFFFF), one bit at a time, to check the table-driven one against.
func crc32cBitwise(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x82F63B78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

func maskBitwise(b []byte) uint32 {
	c := crc32cBitwise(b)
	return (c>>15 | c<<17) + 0xa282ead8
}

func TestCRC32CVectors(t *testing.T) {
	inc := make([]byte, 32)
	for i := range inc {
		inc[i] = byte(i)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		crc  uint32
	}{
		{"123456789", []byte("123456789"), 0xE3069283},
		{"32 zeros", make([]byte, 32), 0x8A9136AA}, // RFC 3720 B.4
		{"32 0xff", bytes.Repeat([]byte{0xff}, 32), 0x62A8AB43},
		{"0..31", inc, 0x46DD794E},
	} {
		if got := crc32cBitwise(tc.in); got != tc.crc {
			t.Errorf("%s: bitwise CRC32C %#08x, want %#08x", tc.name, got, tc.crc)
		}
		if got, want := MaskedCRC(tc.in), maskBitwise(tc.in); got != want {
			t.Errorf("%s: masked %#08x, want %#08x", tc.name, got, want)
		}
	}
	// Worked by hand: 0xE3069283 rotated right by 15 is 0x2507C60D; plus 0xa282ead8.
	if got := MaskedCRC([]byte("123456789")); got != 0xC78AB0E5 {
		t.Errorf("masked CRC32C(123456789) = %#08x, want 0xc78ab0e5", got)
	}
}

// TestScalarEventBytes checks one event against bytes worked out from event.proto and
// summary.proto: Event{wall_time: 1.5, step: 3, summary{value{tag: "loss", simple_value: 0.25}}}.
func TestScalarEventBytes(t *testing.T) {
	want := []byte{
		0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // field 1, fixed64: 1.5 = 0x3ff8000000000000
		0x10, 0x03, // field 2, varint: 3
		0x2a, 0x0d, // field 5, length 13: Summary
		0x0a, 0x0b, // Summary field 1, length 11: Value
		0x0a, 0x04, 'l', 'o', 's', 's', // Value field 1: tag
		0x15, 0, 0, 0x80, 0x3e, // Value field 2, fixed32: 0.25 = 0x3e800000
	}
	got := ScalarEvent(1.5, 3, "loss", 0.25)
	if !bytes.Equal(got, want) {
		t.Fatalf("event bytes\n got % x\nwant % x", got, want)
	}
	rec := AppendRecord(nil, got)
	lenBytes := []byte{26, 0, 0, 0, 0, 0, 0, 0}
	wantRec := append([]byte{}, lenBytes...)
	wantRec = binary.LittleEndian.AppendUint32(wantRec, maskBitwise(lenBytes))
	wantRec = append(wantRec, want...)
	wantRec = binary.LittleEndian.AppendUint32(wantRec, maskBitwise(want))
	if !bytes.Equal(rec, wantRec) {
		t.Fatalf("record\n got % x\nwant % x", rec, wantRec)
	}
	wantFV := append([]byte{0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x1a, 13}, "brain.Event:2"...)
	if fv := FileVersionEvent(1.5); !bytes.Equal(fv, wantFV) {
		t.Errorf("file_version event % x, want % x", fv, wantFV)
	}
}

type event struct {
	wallTime    float64
	step        int64
	fileVersion string
	tag         string
	value       float32
	hasValue    bool
}

// readEvents parses an event file from the formats' definitions, checking every CRC.
func readEvents(t *testing.T, path string) []event {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var events []event
	for len(b) > 0 {
		if len(b) < 12 {
			t.Fatalf("%d trailing bytes", len(b))
		}
		n := binary.LittleEndian.Uint64(b)
		if got := binary.LittleEndian.Uint32(b[8:]); got != maskBitwise(b[:8]) {
			t.Fatalf("length CRC %#x", got)
		}
		if uint64(len(b)) < 16+n {
			t.Fatalf("record of %d bytes, %d left", n, len(b)-12)
		}
		data := b[12 : 12+n]
		if got := binary.LittleEndian.Uint32(b[12+n:]); got != maskBitwise(data) {
			t.Fatalf("data CRC %#x", got)
		}
		b = b[16+n:]
		var e event
		for field, v := range fields(t, data) {
			switch field {
			case eventWallTime:
				e.wallTime = math.Float64frombits(binary.LittleEndian.Uint64(v))
			case eventStep:
				u, _ := binary.Uvarint(v)
				e.step = int64(u)
			case eventFileVersion:
				e.fileVersion = string(v)
			case eventSummary:
				for f, val := range fields(t, v) {
					if f != summaryValue {
						t.Fatalf("summary field %d", f)
					}
					for f2, x := range fields(t, val) {
						switch f2 {
						case valueTag:
							e.tag = string(x)
						case valueSimple:
							e.value, e.hasValue = math.Float32frombits(binary.LittleEndian.Uint32(x)), true
						default:
							t.Fatalf("value field %d", f2)
						}
					}
				}
			default:
				t.Fatalf("event field %d", field)
			}
		}
		events = append(events, e)
	}
	return events
}

// fields yields each field's number and raw payload (a varint's bytes, fixed bytes or the
// length-delimited bytes).
func fields(t *testing.T, b []byte) func(func(int, []byte) bool) {
	return func(yield func(int, []byte) bool) {
		for len(b) > 0 {
			key, n := binary.Uvarint(b)
			if n <= 0 {
				t.Fatal("bad key varint")
			}
			b = b[n:]
			var v []byte
			switch key & 7 {
			case wireVarint:
				_, m := binary.Uvarint(b)
				v, b = b[:m], b[m:]
			case wireFixed64:
				v, b = b[:8], b[8:]
			case wireFixed32:
				v, b = b[:4], b[4:]
			case wireBytes:
				l, m := binary.Uvarint(b)
				v, b = b[m:m+int(l)], b[m+int(l):]
			default:
				t.Fatalf("wire type %d", key&7)
			}
			if !yield(int(key>>3), v) {
				return
			}
		}
	}
}

func TestWriterRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tb")
	clock := time.Unix(1700000000, 250_000_000)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	w, err := newWriter(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if m := regexp.MustCompile(`^events\.out\.tfevents\.1700000001\.(.+)$`).FindStringSubmatch(filepath.Base(w.Path())); m == nil || (host != "" && m[1] != host) {
		t.Errorf("file name %s", filepath.Base(w.Path()))
	}
	want := []event{{wallTime: 1700000001.25, fileVersion: "brain.Event:2"}}
	for i, s := range []struct {
		tag  string
		step int64
		v    float64
	}{{"loss/total", 0, 2.5}, {"loss/total", 100, 0}, {"acc", 1 << 40, 0.93}, {"lr", -1, math.Inf(1)}} {
		if err := w.Scalar(s.tag, s.step, s.v); err != nil {
			t.Fatal(err)
		}
		want = append(want, event{wallTime: 1700000002.25 + float64(i), step: s.step, tag: s.tag, value: float32(s.v), hasValue: true})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Scalar("x", 1, 1); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Scalar after Close: %v", err)
	}
	got := readEvents(t, w.Path())
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("read back\n got %v\nwant %v", got, want)
	}

	// A second writer in the same second gets its own file.
	clock = time.Unix(1700000000, 250_000_000)
	w2, err := newWriter(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if w2.Path() == w.Path() || !strings.HasPrefix(w2.Path(), w.Path()) {
		t.Errorf("second writer's file %s beside %s", w2.Path(), w.Path())
	}
	w2.Close()
	if got := readEvents(t, w2.Path()); len(got) != 1 || got[0].fileVersion != "brain.Event:2" {
		t.Errorf("second file holds %v", got)
	}
}

func TestWriterErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(file, nil, 0o644)
	if _, err := NewWriter(file); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("NewWriter on a file: %v", err)
	}
	if _, err := NewWriter(""); err == nil {
		t.Error("NewWriter(\"\") succeeded")
	}
	w, err := NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Scalar("", 1, 1); err == nil {
		t.Error("empty tag accepted")
	}
	// The file goes away under the writer: the buffered records cannot land, and both Flush and
	// Close say so (and keep saying so).
	w.f.Close()
	if err := w.Scalar("loss", 1, 1); err != nil {
		t.Fatalf("buffered Scalar: %v", err)
	}
	if err := w.Flush(); err == nil || !strings.Contains(err.Error(), w.Path()) {
		t.Errorf("Flush to a closed file: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after a failed flush returned nil")
	}

	// A full disk: /dev/full fails every write with ENOSPC.
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	w = &Writer{f: full, w: bufio.NewWriterSize(full, 64), path: "/dev/full", now: time.Now}
	var serr error
	for i := 0; i < 10 && serr == nil; i++ {
		serr = w.Scalar("a/long/enough/tag/to/fill/the/buffer", int64(i), 1)
	}
	if serr == nil || !errors.Is(serr, io.ErrShortWrite) && !strings.Contains(serr.Error(), "no space") {
		t.Errorf("writes to a full disk: %v", serr)
	}
	if err := w.Close(); err == nil {
		t.Error("Close on a full disk returned nil")
	}
}
