package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// --memprofile writes a heap profile pprof reads (gzip-compressed
// protobuf); without a path it writes nothing.
func TestWriteHeapProfile(t *testing.T) {
	if err := writeHeapProfile(""); err != nil {
		t.Fatalf("no path: %v", err)
	}
	path := filepath.Join(t.TempDir(), "heap.prof")
	if err := writeHeapProfile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || !bytes.Equal(b[:2], []byte{0x1f, 0x8b}) {
		t.Fatalf("profile %d bytes (%v), want a gzip stream", len(b), err)
	}
	if err := writeHeapProfile(filepath.Join(t.TempDir(), "no", "such", "dir", "h.prof")); err == nil {
		t.Error("a path that cannot be created: no error")
	}
}
