package sqlite

import "testing"

// TestPageCacheBound keeps the bound on the store's page caches that
// files' comment, the README and ARCHITECTURE state true: every writer,
// the two checkpointers (log.db's and audiences.db's) and full reader
// pools.
func TestPageCacheBound(t *testing.T) {
	kib := 2 * checkpointerCache
	for _, f := range files {
		kib += f.writerCache + readers*f.readerCache
	}
	if kib != 260*1024 {
		t.Errorf("page caches come to %d KiB at most; the documents say 260 MiB", kib)
	}
}
