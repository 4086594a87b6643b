package tbevent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaskedCRC is TFRecord's checksum: CRC32C, rotated right by 15 bits and offset, because a CRC
// of data that itself holds CRCs is weak (the TFRecord format's own reason).
func MaskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// AppendRecord frames data as one TFRecord: uint64 length (little-endian), the masked CRC32C of
// those eight bytes, the data, and the masked CRC32C of the data.
func AppendRecord(dst, data []byte) []byte {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(data)))
	dst = append(dst, n[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, MaskedCRC(n[:]))
	dst = append(dst, data...)
	return binary.LittleEndian.AppendUint32(dst, MaskedCRC(data))
}

// Protobuf wire types and the field numbers of tensorflow/core/util/event.proto and
// tensorflow/core/framework/summary.proto that a scalar needs.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5

	eventWallTime    = 1 // double
	eventStep        = 2 // int64
	eventFileVersion = 3 // string
	eventSummary     = 5 // Summary
	summaryValue     = 1 // repeated Value
	valueTag         = 1 // string
	valueSimple      = 2 // float
)

func appendKey(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field)<<3|uint64(wire))
}

func appendBytes(b []byte, field int, v []byte) []byte {
	b = appendKey(b, field, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// eventHead encodes the fields every event carries. Zero values are left out, as proto3 encoders
// do, so the bytes match what TensorFlow's own writer produces.
func eventHead(wallTime float64, step int64) []byte {
	var b []byte
	if wallTime != 0 {
		b = appendKey(b, eventWallTime, wireFixed64)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(wallTime))
	}
	if step != 0 {
		b = appendKey(b, eventStep, wireVarint)
		b = binary.AppendUvarint(b, uint64(step)) // int64 is two's complement as a varint
	}
	return b
}

// FileVersionEvent is the event TensorBoard expects first in every file.
func FileVersionEvent(wallTime float64) []byte {
	return appendBytes(eventHead(wallTime, 0), eventFileVersion, []byte("brain.Event:2"))
}

// ScalarEvent encodes Event{wall_time, step, summary: Summary{value: [Value{tag, simple_value}]}}.
// simple_value sits in a oneof, so it is written even when zero.
func ScalarEvent(wallTime float64, step int64, tag string, v float32) []byte {
	var val []byte
	val = appendBytes(val, valueTag, []byte(tag))
	val = appendKey(val, valueSimple, wireFixed32)
	val = binary.LittleEndian.AppendUint32(val, math.Float32bits(v))
	summary := appendBytes(nil, summaryValue, val)
	return appendBytes(eventHead(wallTime, step), eventSummary, summary)
}

// Writer appends scalar events to one event file. It is not safe for concurrent use. The first
// error is kept and returned by every later call, as bufio.Writer does.
type Writer struct {
	f    *os.File
	w    *bufio.Writer
	path string
	now  func() time.Time
	err  error
}

// NewWriter creates dir if needed and a new file events.out.tfevents.<unix-time>.<hostname> in
// it (with a .N suffix if a writer of the same second got there first), and writes the
// file_version event.
func NewWriter(dir string) (*Writer, error) {
	return newWriter(dir, time.Now)
}

func newWriter(dir string, now func() time.Time) (*Writer, error) {
	if dir == "" {
		return nil, errors.New("tensorboard: empty directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.NewReplacer("/", "_", string(filepath.Separator), "_").Replace(host)
	t := now()
	base := filepath.Join(dir, fmt.Sprintf("events.out.tfevents.%d.%s", t.Unix(), host))
	path := base
	var f *os.File
	for i := 1; ; i++ {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) || i > 1000 {
			break
		}
		path = fmt.Sprintf("%s.%d", base, i)
	}
	if err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	w := &Writer{f: f, w: bufio.NewWriter(f), path: path, now: now}
	w.write(FileVersionEvent(seconds(t)))
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// seconds adds the fraction separately, since UnixNano as a float64 rounds away microseconds.
func seconds(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

func (w *Writer) write(event []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.w.Write(AppendRecord(nil, event)); err != nil {
		w.err = fmt.Errorf("tensorboard %s: %w", w.path, err)
	}
}

// Scalar appends one value of the curve tag at step, stamped with the current time. TensorBoard
// stores scalars as float32; v is rounded to it. Records are buffered: Flush makes them visible.
func (w *Writer) Scalar(tag string, step int64, v float64) error {
	if w.f == nil && w.err == nil {
		return fmt.Errorf("tensorboard %s: writer closed", w.path)
	}
	if tag == "" {
		return fmt.Errorf("tensorboard %s: empty tag", w.path)
	}
	w.write(ScalarEvent(seconds(w.now()), step, tag, float32(v)))
	return w.err
}

// Flush hands buffered records to the operating system, so a running TensorBoard sees them.
func (w *Writer) Flush() error {
	if w.err == nil && w.f != nil {
		if err := w.w.Flush(); err != nil {
			w.err = fmt.Errorf("tensorboard %s: %w", w.path, err)
		}
	}
	return w.err
}

// Close flushes, syncs and closes the file. It is idempotent; later calls return the first error.
func (w *Writer) Close() error {
	if w.f == nil {
		return w.err
	}
	w.Flush()
	if w.err == nil {
		if err := w.f.Sync(); err != nil {
			w.err = fmt.Errorf("tensorboard %s: %w", w.path, err)
		}
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = fmt.Errorf("tensorboard %s: %w", w.path, err)
	}
	w.f = nil
	return w.err
}
