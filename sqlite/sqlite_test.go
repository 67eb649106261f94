package sqlite_test

import (
	"context"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/sqlite"
	"github.com/kithcdp/kith/storetest"
)

func open(t *testing.T, dir string) kith.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestConformance runs the storage conformance suite on the embedded store.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) kith.Store { return open(t, t.TempDir()) })
	storetest.RunPersistence(t, func(t *testing.T) (kith.Store, func() kith.Store) {
		dir := t.TempDir()
		return open(t, dir), func() kith.Store { return open(t, dir) }
	})
}

// TestDataDirectoryIsExclusive checks that a second store cannot open a
// data directory in use (the dedup index lives in one process's memory),
// and can once the first is closed.
func TestDataDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	first := open(t, dir)
	if db, err := sqlite.Open(context.Background(), dir, sqlite.Options{}); err == nil {
		db.Close()
		first.Close()
		t.Fatal("a second store opened a data directory in use")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := open(t, dir)
	second.Close()
}
