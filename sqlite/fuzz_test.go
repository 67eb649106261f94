package sqlite_test

import (
	"context"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/sqlite"
	"github.com/kithcdp/kith/storetest"
)

// FuzzWritePath: whatever collection accepts, the embedded store holds,
// indexes and gives back (storetest.FuzzWritePath).
func FuzzWritePath(f *testing.F) {
	storetest.FuzzWritePath(f, func(tb testing.TB) kith.Store {
		db, err := sqlite.Open(context.Background(), tb.TempDir(), sqlite.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { db.Close() })
		return db
	})
}
