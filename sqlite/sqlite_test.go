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
